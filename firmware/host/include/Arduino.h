// Host board layer (a stand-in, not the Arduino-ESP32 core): what the firmware uses of Arduino.h,
// with the behaviour of espressif/arduino-esp32 tag 3.1.1:
// - millis() (cores/esp32/esp32-hal-misc.c, `unsigned long millis()`: `return (unsigned long)
//   (esp_timer_get_time() / 1000ULL);`) truncates to `unsigned long`, which is 32 bits on the
//   ESP32: it wraps after 2^32 ms (49.7 days). The host keeps that width on purpose.
// - delay() (same file, `void delay(uint32_t ms)`: vTaskDelay) sleeps the calling task;
//   Serial (cores/esp32/HardwareSerial.h, println) prints the console lines (stdout here).
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
