// Stub of ESP-IDF's esp_random.h.
#pragma once
#include <cstdint>
uint32_t esp_random(void);
