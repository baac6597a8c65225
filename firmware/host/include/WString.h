// Host board layer (a stand-in, not the Arduino-ESP32 core): the part of Arduino's String the
// firmware uses (espressif/arduino-esp32 tag 3.1.1, cores/esp32/WString.h): an owned, NUL-terminated text.
#pragma once

#include <string>

class String {
  public:
    String() = default;
    String(const char* text) : text_(text == nullptr ? "" : text) {}
    explicit String(std::string text) : text_(std::move(text)) {}
    const char* c_str() const { return text_.c_str(); }
    unsigned int length() const { return static_cast<unsigned int>(text_.size()); }

  private:
    std::string text_;
};
