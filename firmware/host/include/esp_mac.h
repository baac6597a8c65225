// Host board layer (a stand-in, not ESP-IDF): the factory MAC (esp-idf v5.3.2
// components/esp_hw_support/include/esp_mac.h:111 esp_efuse_mac_get_default, :129 esp_read_mac), from the host board's --mac.
#pragma once

#include <cstdint>

#include "esp_err.h"

typedef enum { ESP_MAC_WIFI_STA, ESP_MAC_WIFI_SOFTAP, ESP_MAC_BT, ESP_MAC_ETH } esp_mac_type_t;

esp_err_t esp_read_mac(uint8_t* mac, esp_mac_type_t type);
