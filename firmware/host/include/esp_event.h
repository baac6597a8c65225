// Host board layer (a stand-in, not ESP-IDF): the event handler type of esp-idf v5.3.2
// components/esp_event/include/esp_event_base.h:16-22 (esp_event_base_t, esp_event_handler_t).
#pragma once

#include <cstdint>

typedef const char* esp_event_base_t;
typedef void (*esp_event_handler_t)(void* event_handler_arg, esp_event_base_t event_base, int32_t event_id,
                                    void* event_data);
