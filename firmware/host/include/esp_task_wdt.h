// Host board layer (a stand-in, not ESP-IDF): the task watchdog (esp-idf v5.3.2
// components/esp_system/include/esp_task_wdt.h:25 esp_task_wdt_config_t, :47 init, :90 add, :118
// reset). A subscribed thread that does not call
// esp_task_wdt_reset() within timeout_ms triggers it; with trigger_panic the board resets with
// reason ESP_RST_TASK_WDT (components/esp_system/task_wdt/task_wdt.c:473 task_wdt_isr -> :376
// esp_reset_reason_set_hint(ESP_RST_TASK_WDT)).
#pragma once

#include <cstdint>

#include "esp_err.h"

typedef struct {
    uint32_t timeout_ms;
    uint32_t idle_core_mask;
    bool trigger_panic;
} esp_task_wdt_config_t;

typedef void* TaskHandle_t;

esp_err_t esp_task_wdt_init(const esp_task_wdt_config_t* config);
esp_err_t esp_task_wdt_reconfigure(const esp_task_wdt_config_t* config);
esp_err_t esp_task_wdt_add(TaskHandle_t task_handle);
esp_err_t esp_task_wdt_reset(void);
