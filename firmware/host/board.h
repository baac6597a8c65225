// The host board: what an ESP32 module is to the firmware, on a Linux machine, so that
// src/main.cpp itself runs in tests. A stand-in, not a product: a file-backed flash with the
// board's partition table, a virtual clock, one Wi-Fi access point named by the test, a factory
// MAC, and a reset that restarts the process on the same flash (the reason survives it).
// The Arduino and ESP-IDF functions in include/ are built on it.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "esp_partition.h"
#include "esp_system.h"

namespace vesper::host {

struct BoardOptions {
    std::string flash_path;                      // the flash, a file (made 4 MiB of 0xFF when absent)
    std::string table_path, nvs_path, app_path;  // written into the flash before the first boot
    std::string wifi_ssid, wifi_pass;            // the one access point in range
    std::array<std::uint8_t, 6> mac{0x24, 0x0A, 0xC4, 0x00, 0x00, 0x01};
    int rssi = -55;
    std::uint64_t clock_start_ms = 0;  // where the virtual clock starts on this power-on
    std::string ota_base;              // the build's VESPER_OTA_BASE
    std::string board = "bellcore-v2";  // the build's VESPER_BOARD
    std::vector<std::string> argv;      // to restart with (without the one-time options)
};

constexpr std::uint32_t kFlashSize = 4 * 1024 * 1024;
constexpr std::uint32_t kTableOffset = 0x8000;

class Board {
  public:
    static Board& get();

    // Opens (or makes) the flash and writes the parts the options name; false with a reason.
    bool power_on(const BoardOptions& options, std::string& error);
    const BoardOptions& options() const { return options_; }

    std::vector<std::uint8_t> read(std::uint32_t offset, std::uint32_t len) const;
    void write(std::uint32_t offset, const std::uint8_t* data, std::size_t len);
    void erase(std::uint32_t offset, std::uint32_t len);

    const std::vector<esp_partition_t>& partitions() const { return partitions_; }
    const esp_partition_t* find(esp_partition_type_t type, int subtype) const;

    // Microseconds since this boot on the virtual clock.
    std::int64_t now_us() const;

    bool wifi_connected() const { return wifi_connected_; }
    void set_wifi_connected(bool connected) { wifi_connected_ = connected; }
    // A test image can carry a marker that makes the board's radio fail, as a broken build would
    // (`vesper-host-fault:no-network` anywhere in the running app).
    bool radio_broken() const { return radio_broken_; }
    void set_radio_broken(bool broken) { radio_broken_ = broken; }

    esp_reset_reason_t reset_reason() const { return reset_reason_; }
    [[noreturn]] void restart(esp_reset_reason_t reason);

  private:
    bool load_table(std::string& error);

    BoardOptions options_;
    int fd_ = -1;
    std::vector<esp_partition_t> partitions_;
    std::int64_t boot_ns_ = 0;
    bool wifi_connected_ = false;
    bool radio_broken_ = false;
    esp_reset_reason_t reset_reason_ = ESP_RST_POWERON;
};

// The bootloader's choice of app (ota.cpp): the running partition, or nullopt with a reason.
std::optional<const esp_partition_t*> boot_select(std::string& error);
// The running app's description, read at boot.
void load_app_description(const esp_partition_t* running);

}  // namespace vesper::host
