// Host board layer (a stand-in, not the Arduino-ESP32 core): what the firmware uses of Arduino.h,
// with the behaviour of arduino-esp32 3.1 (cores/esp32/esp32-hal-misc.c, HardwareSerial.h):
// - millis() is esp_timer_get_time() / 1000 truncated to `unsigned long`, which is 32 bits on
//   the ESP32: it wraps after 2^32 ms (49.7 days). The host keeps that width on purpose.
// - delay() sleeps the calling task; Serial prints the console lines (stdout on the host).
#pragma once

#include <cstddef>
#include <cstdint>

#include "WString.h"

typedef uint8_t byte;

uint32_t millis();
void delay(uint32_t ms);

class HardwareSerial {
  public:
    void begin(unsigned long baud);
    size_t println(const char* line);
};

extern HardwareSerial Serial;
