// The host board's ESP-IDF system calls: clock, randomness, reset, heap, MAC, chip, error names,
// the certificate bundle's handle and the task watchdog (see the headers in include/).
#include <esp_chip_info.h>
#include <esp_crt_bundle.h>
#include <esp_err.h>
#include <esp_mac.h>
#include <esp_random.h>
#include <esp_system.h>
#include <esp_task_wdt.h>
#include <esp_timer.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>

#include "board.h"

using vesper::host::Board;

int64_t esp_timer_get_time(void) { return Board::get().now_us(); }

uint32_t esp_random(void) {
    static std::mutex lock;
    static std::random_device device;
    std::lock_guard<std::mutex> guard(lock);
    return device();
}

void esp_restart(void) { Board::get().restart(ESP_RST_SW); }

esp_reset_reason_t esp_reset_reason(void) { return Board::get().reset_reason(); }

// What a classic ESP32 running the Arduino core has free after Wi-Fi, TLS and MQTT started
// (a host has no comparable figure; this keeps the heartbeat's field realistic).
uint32_t esp_get_free_heap_size(void) { return 176000; }

esp_err_t esp_read_mac(uint8_t* mac, esp_mac_type_t) {
    std::memcpy(mac, Board::get().options().mac.data(), 6);
    return ESP_OK;
}

void esp_chip_info(esp_chip_info_t* out_info) { *out_info = {CHIP_ESP32, 0, 300, 2}; }

const char* esp_err_to_name(esp_err_t code) {
    switch (code) {
        case ESP_OK: return "ESP_OK";
        case ESP_FAIL: return "ESP_FAIL";
        case ESP_ERR_NO_MEM: return "ESP_ERR_NO_MEM";
        case ESP_ERR_INVALID_ARG: return "ESP_ERR_INVALID_ARG";
        case ESP_ERR_INVALID_STATE: return "ESP_ERR_INVALID_STATE";
        case ESP_ERR_INVALID_SIZE: return "ESP_ERR_INVALID_SIZE";
        case ESP_ERR_NOT_FOUND: return "ESP_ERR_NOT_FOUND";
        case ESP_ERR_TIMEOUT: return "ESP_ERR_TIMEOUT";
        case ESP_ERR_OTA_VALIDATE_FAILED: return "ESP_ERR_OTA_VALIDATE_FAILED";
        case ESP_ERR_OTA_ROLLBACK_FAILED: return "ESP_ERR_OTA_ROLLBACK_FAILED";
        case ESP_ERR_HTTP_CONNECT: return "ESP_ERR_HTTP_CONNECT";
        case ESP_ERR_ESP_TLS_FAILED_CONNECT_TO_HOST: return "ESP_ERR_ESP_TLS_FAILED_CONNECT_TO_HOST";
        case ESP_ERR_MBEDTLS_SSL_SETUP_FAILED: return "ESP_ERR_MBEDTLS_SSL_SETUP_FAILED";
        case ESP_ERR_MBEDTLS_SSL_HANDSHAKE_FAILED: return "ESP_ERR_MBEDTLS_SSL_HANDSHAKE_FAILED";
        default: return "UNKNOWN ERROR";
    }
}

// Only its address matters to the clients: it says "verify against the bundle".
esp_err_t esp_crt_bundle_attach(void*) { return ESP_OK; }

namespace {

// The task watchdog of esp-idf v5.3.2 components/esp_system/task_wdt/task_wdt.c: one subscribed
// task (the loop), checked by a timer (:473 task_wdt_isr); when it did not reset in time the
// "Task watchdog got triggered" report is printed (:788) and, with trigger_panic, the chip resets.
struct Watchdog {
    std::mutex lock;
    esp_task_wdt_config_t config{5000, 0, false};
    bool subscribed = false;
    int64_t last_reset_us = 0;
    std::once_flag started;

    void start() {
        std::call_once(started, [this] {
            std::thread([this] {
                for (;;) {
                    std::this_thread::sleep_for(std::chrono::milliseconds(100));
                    std::unique_lock<std::mutex> guard(lock);
                    if (!subscribed) continue;
                    const int64_t late_us = esp_timer_get_time() - last_reset_us;
                    if (late_us < static_cast<int64_t>(config.timeout_ms) * 1000) continue;
                    std::printf("E (%lld) task_wdt: Task watchdog got triggered. The following tasks/users did not "
                                "reset the watchdog in time:\r\nE (%lld) task_wdt:  - loopTask (CPU 1)\r\n",
                                static_cast<long long>(esp_timer_get_time() / 1000),
                                static_cast<long long>(esp_timer_get_time() / 1000));
                    if (config.trigger_panic) Board::get().restart(ESP_RST_TASK_WDT);
                    last_reset_us = esp_timer_get_time();
                }
            }).detach();
        });
    }
};

Watchdog& watchdog() {
    static Watchdog dog;
    return dog;
}

}  // namespace

esp_err_t esp_task_wdt_init(const esp_task_wdt_config_t* config) { return esp_task_wdt_reconfigure(config); }

esp_err_t esp_task_wdt_reconfigure(const esp_task_wdt_config_t* config) {
    auto& dog = watchdog();
    std::lock_guard<std::mutex> guard(dog.lock);
    dog.config = *config;
    return ESP_OK;
}

esp_err_t esp_task_wdt_add(TaskHandle_t) {
    auto& dog = watchdog();
    {
        std::lock_guard<std::mutex> guard(dog.lock);
        dog.subscribed = true;
        dog.last_reset_us = esp_timer_get_time();
    }
    dog.start();
    return ESP_OK;
}

esp_err_t esp_task_wdt_reset(void) {
    auto& dog = watchdog();
    std::lock_guard<std::mutex> guard(dog.lock);
    if (!dog.subscribed) return ESP_ERR_NOT_FOUND;
    dog.last_reset_us = esp_timer_get_time();
    return ESP_OK;
}
