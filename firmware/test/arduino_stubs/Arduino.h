// Stub (declarations only) of the Arduino-ESP32 core's Arduino.h, for compiling src/main.cpp.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

typedef uint8_t byte;
typedef bool boolean;

class String {
  public:
    String(const char* s = "") : s_(s) {}
    const char* c_str() const { return s_.c_str(); }

  private:
    std::string s_;
};

class HardwareSerial {
  public:
    void begin(unsigned long baud);
    size_t println(const char* line);
};
extern HardwareSerial Serial;

class EspClass {
  public:
    void restart();
};
extern EspClass ESP;

unsigned long millis();
void delay(uint32_t ms);
