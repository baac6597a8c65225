// Host board layer (a stand-in, not ESP-IDF): esp_timer_get_time(), microseconds since boot as a
// signed 64-bit number (esp-idf v5.3.2 components/esp_timer/include/esp_timer.h:223), from the host
// board's virtual clock, which a test may start anywhere (--clock-start-ms) to cross 2^32 ms.
#pragma once

#include <cstdint>

int64_t esp_timer_get_time(void);
