// Host board layer (a stand-in, not ESP-IDF): restart, reset reason and free heap (esp-idf v5.3.2
// components/esp_system/include/esp_system.h:24-41 esp_reset_reason_t, :79 esp_restart, :85
// esp_reset_reason, :95 esp_get_free_heap_size). esp_restart() restarts the host process on the
// same flash image, as a reset restarts the chip; the reason survives into the next boot.
#pragma once

#include <cstdint>

typedef enum {
    ESP_RST_UNKNOWN,
    ESP_RST_POWERON,
    ESP_RST_EXT,
    ESP_RST_SW,
    ESP_RST_PANIC,
    ESP_RST_INT_WDT,
    ESP_RST_TASK_WDT,
    ESP_RST_WDT,
    ESP_RST_DEEPSLEEP,
    ESP_RST_BROWNOUT,
    ESP_RST_SDIO,
} esp_reset_reason_t;

[[noreturn]] void esp_restart(void);
esp_reset_reason_t esp_reset_reason(void);
uint32_t esp_get_free_heap_size(void);
