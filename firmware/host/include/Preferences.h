// Host board layer (a stand-in, not the Arduino-ESP32 core): Arduino's Preferences over the NVS
// partition of the host board's flash image (espressif/arduino-esp32 tag 3.1.1, libraries/
// Preferences/src/Preferences.cpp). Kept: Preferences::begin() fails for a namespace the
// partition does not hold when read-only (it calls nvs_open_from_partition, which answers
// ESP_ERR_NVS_NOT_FOUND in NVS_READONLY mode); Preferences::getType() says what a key is
// (PT_INVALID when absent); each typed getter (getString, getUChar, ...) answers its default for
// a key of another type (nvs_get_str/nvs_get_u8 answer ESP_ERR_NVS_TYPE_MISMATCH); isKey() is
// true for any type (it asks getType() != PT_INVALID).
#pragma once

#include <cstddef>
#include <cstdint>

#include "WString.h"

typedef enum {
    PT_I8,
    PT_U8,
    PT_I16,
    PT_U16,
    PT_I32,
    PT_U32,
    PT_I64,
    PT_U64,
    PT_STR,
    PT_BLOB,
    PT_INVALID
} PreferenceType;

class Preferences {
  public:
    bool begin(const char* name, bool readOnly = false, const char* partition_label = nullptr);
    void end();
    bool isKey(const char* key);
    PreferenceType getType(const char* key);
    uint8_t getUChar(const char* key, uint8_t defaultValue = 0);
    uint16_t getUShort(const char* key, uint16_t defaultValue = 0);
    uint32_t getUInt(const char* key, uint32_t defaultValue = 0);
    uint64_t getULong64(const char* key, uint64_t defaultValue = 0);
    String getString(const char* key, String defaultValue = String());

  private:
    const void* values_ = nullptr;  // the namespace read at begin(), until end()
};
