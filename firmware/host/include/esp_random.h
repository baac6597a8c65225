// Host board layer (a stand-in, not ESP-IDF): esp_random() (esp-idf v5.3.2
// components/esp_hw_support/include/esp_random.h:30 esp_random), from the host's random device.
#pragma once

#include <cstdint>

uint32_t esp_random(void);
