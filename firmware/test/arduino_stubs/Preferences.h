// Stub of the Arduino-ESP32 core's Preferences.h (ESP-IDF's nvs_get_* underneath).
#pragma once
#include "Arduino.h"

typedef enum { PT_I8, PT_U8, PT_I16, PT_U16, PT_I32, PT_U32, PT_I64, PT_U64, PT_STR, PT_BLOB, PT_INVALID } PreferenceType;

class Preferences {
  public:
    bool begin(const char* name, bool readOnly = false, const char* partition_label = nullptr);
    bool isKey(const char* key);
    PreferenceType getType(const char* key);
    String getString(const char* key, String defaultValue = String());
    uint16_t getUShort(const char* key, uint16_t defaultValue = 0);
};
