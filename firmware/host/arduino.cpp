// The host board's Arduino layer: Serial, millis()/delay(), WiFi and Preferences (see the headers
// in include/ for the Arduino-ESP32 behaviour each keeps).
#include <Arduino.h>
#include <Preferences.h>
#include <WiFi.h>
#include <esp_timer.h>

#include <cstdio>
#include <memory>
#include <thread>

#include "board.h"
#include "nvs_image.h"

HardwareSerial Serial;
WiFiClass WiFi;

uint32_t millis() { return static_cast<uint32_t>(static_cast<uint64_t>(esp_timer_get_time()) / 1000ULL); }

void delay(uint32_t ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

void HardwareSerial::begin(unsigned long) {}

size_t HardwareSerial::println(const char* line) {
    const int n = std::printf("%s\r\n", line);  // Print::println ends a line with CR LF
    std::fflush(stdout);
    return n < 0 ? 0 : static_cast<size_t>(n);
}

String IPAddress::toString() const {
    char text[16];
    std::snprintf(text, sizeof text, "%u.%u.%u.%u", address_ & 0xFF, (address_ >> 8) & 0xFF, (address_ >> 16) & 0xFF,
                  address_ >> 24);
    return String(text);
}

namespace {
wl_status_t g_status = WL_IDLE_STATUS;
}

bool WiFiClass::mode(wifi_mode_t) { return true; }

wl_status_t WiFiClass::begin(const char* ssid, const char* passphrase) {
    auto& board = vesper::host::Board::get();
    const auto& o = board.options();
    if (board.radio_broken() || o.wifi_ssid.empty() || o.wifi_ssid != ssid) {
        g_status = WL_NO_SSID_AVAIL;
    } else if (o.wifi_pass != (passphrase == nullptr ? "" : passphrase)) {
        g_status = WL_CONNECT_FAILED;
    } else {
        g_status = WL_CONNECTED;
    }
    board.set_wifi_connected(g_status == WL_CONNECTED);
    return g_status;
}

uint8_t WiFiClass::waitForConnectResult(unsigned long) { return g_status; }

wl_status_t WiFiClass::status() { return g_status; }

IPAddress WiFiClass::localIP() { return IPAddress(g_status == WL_CONNECTED ? 0x0100007Fu : 0u); }  // 127.0.0.1

int8_t WiFiClass::RSSI() { return static_cast<int8_t>(g_status == WL_CONNECTED ? vesper::host::Board::get().options().rssi : 0); }

namespace {

const vesper::host::NvsImage* image_of(const void* values) { return static_cast<const vesper::host::NvsImage*>(values); }

std::optional<vesper::NvsType> type_in(const void* values, const char* key) {
    if (values == nullptr) return std::nullopt;
    return image_of(values)->type_of(key);
}

template <typename T>
T number(const void* values, const char* key, vesper::NvsType type, T fallback) {
    if (type_in(values, key) != type) return fallback;
    return static_cast<T>(*image_of(values)->get_unsigned(key));
}

}  // namespace

bool Preferences::begin(const char* name, bool, const char*) {
    auto& board = vesper::host::Board::get();
    const esp_partition_t* nvs = board.find(ESP_PARTITION_TYPE_DATA, ESP_PARTITION_SUBTYPE_DATA_NVS);
    if (nvs == nullptr) return false;
    auto image = vesper::host::NvsImage::read(board.read(nvs->address, nvs->size), name);
    if (!image) return false;  // read-only nvs_open of a namespace that is not there
    end();
    values_ = new vesper::host::NvsImage(std::move(*image));
    return true;
}

void Preferences::end() {
    delete image_of(values_);
    values_ = nullptr;
}

bool Preferences::isKey(const char* key) { return type_in(values_, key).has_value(); }

PreferenceType Preferences::getType(const char* key) {
    const auto type = type_in(values_, key);
    if (!type) return PT_INVALID;
    switch (*type) {
        case vesper::NvsType::I8: return PT_I8;
        case vesper::NvsType::U8: return PT_U8;
        case vesper::NvsType::I16: return PT_I16;
        case vesper::NvsType::U16: return PT_U16;
        case vesper::NvsType::I32: return PT_I32;
        case vesper::NvsType::U32: return PT_U32;
        case vesper::NvsType::I64: return PT_I64;
        case vesper::NvsType::U64: return PT_U64;
        case vesper::NvsType::String: return PT_STR;
        case vesper::NvsType::Blob: return PT_BLOB;
    }
    return PT_INVALID;
}

uint8_t Preferences::getUChar(const char* key, uint8_t fallback) {
    return number(values_, key, vesper::NvsType::U8, fallback);
}
uint16_t Preferences::getUShort(const char* key, uint16_t fallback) {
    return number(values_, key, vesper::NvsType::U16, fallback);
}
uint32_t Preferences::getUInt(const char* key, uint32_t fallback) {
    return number(values_, key, vesper::NvsType::U32, fallback);
}
uint64_t Preferences::getULong64(const char* key, uint64_t fallback) {
    return number(values_, key, vesper::NvsType::U64, fallback);
}

String Preferences::getString(const char* key, String fallback) {
    if (type_in(values_, key) != vesper::NvsType::String) return fallback;
    return String(*image_of(values_)->get_string(key));
}
