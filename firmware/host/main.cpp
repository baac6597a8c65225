// vesper-device: the firmware (src/main.cpp) on this machine. The host board powers on with the
// flash the options describe, its bootloader picks the app as an ESP32's does, and Arduino's
// start-up runs setup() and then loop() for ever (espressif/arduino-esp32 tag 3.1.1,
// cores/esp32/main.cpp loopTask; cores/esp32/esp32-hal-misc.c initArduino). A reset restarts this process on the same flash.
#include <Arduino.h>
#include <esp_ota_ops.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "board.h"

void setup();
void loop();

// Arduino-ESP32's weak default (tag 3.1.1, cores/esp32/esp32-hal-misc.c: `bool
// verifyRollbackLater() __attribute__((weak))` returning false, read by initArduino(), which
// calls esp_ota_mark_app_valid_cancel_rollback() for an ESP_OTA_IMG_PENDING_VERIFY app before
// setup()): a pending update is marked valid unless the application overrides this (src/main.cpp
// does).
extern "C" bool verifyRollbackLater() __attribute__((weak));
extern "C" bool verifyRollbackLater() { return false; }

std::string vesper_host_ota_base() { return vesper::host::Board::get().options().ota_base; }
std::string vesper_host_board() { return vesper::host::Board::get().options().board; }

namespace {

const char* kUsage =
    "usage: vesper-device --flash FLASH.bin [--table TABLE.bin] [--nvs NVS.bin] [--app APP.bin]\n"
    "                     [--wifi SSID:PASSWORD] [--ota-base URL] [--board NAME] [--mac AA:BB:CC:DD:EE:FF]\n"
    "                     [--rssi DBM] [--clock-start-ms N] [--write-only]\n"
    "\n"
    "Runs the Vesper firmware (firmware/src/main.cpp) on this machine, on a host board that stands\n"
    "in for an ESP32: a file-backed 4 MiB flash, one Wi-Fi access point, a virtual clock. Console\n"
    "lines go to stdout. A reset (reboot, update, watchdog) restarts the program on the same flash.\n"
    "\n"
    "  --flash FLASH.bin     the board's flash (made blank when absent, kept between runs)\n"
    "  --table TABLE.bin     write this partition table at 0x8000 first\n"
    "  --nvs NVS.bin         write this image into the nvs partition first\n"
    "                        (e.g. GET /manufacturing/devices/SN/nvs.bin)\n"
    "  --app APP.bin         write this app into the first app partition and blank otadata, as a\n"
    "                        station flashing a fresh board does\n"
    "  --wifi SSID:PASSWORD  the access point in range (default: none)\n"
    "  --ota-base URL        the build's VESPER_OTA_BASE: /ota/BOARD/latest.json is below it\n"
    "  --board NAME          the build's VESPER_BOARD (default bellcore-v2)\n"
    "  --mac MAC             the factory MAC (default 24:0A:C4:00:00:01)\n"
    "  --rssi DBM            the access point's signal (default -55)\n"
    "  --clock-start-ms N    start the clock at N ms instead of 0 on this power-on (e.g. just below\n"
    "                        2^32 to cross millis()'s wrap)\n"
    "  --write-only          write --table, --nvs and --app into the flash and exit without booting\n"
    "                        (a station flashing a board that is not powered yet)\n"
    "\n"
    "Exit codes: 2 bad command line, 3 the flash holds nothing to boot.\n";

int usage_error(const std::string& message) {
    std::cerr << "vesper-device: " << message << "\n\n" << kUsage;
    return 2;
}

bool parse_mac(const std::string& text, std::array<std::uint8_t, 6>& mac) {
    unsigned v[6];
    char tail = 0;
    if (std::sscanf(text.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) != 6) {
        return false;
    }
    for (int i = 0; i < 6; ++i) mac[i] = static_cast<std::uint8_t>(v[i]);
    return true;
}

bool parse_number(const std::string& text, long long low, long long high, long long& out) {
    if (text.empty() || text.size() > 19) return false;
    std::size_t used = 0;
    try {
        out = std::stoll(text, &used);
    } catch (...) {
        return false;
    }
    return used == text.size() && out >= low && out <= high;
}

// Options that only describe this power-on are not repeated by a reset.
bool one_time(const std::string& arg) {
    return arg == "--table" || arg == "--nvs" || arg == "--app" || arg == "--clock-start-ms";
}

bool image_contains(const esp_partition_t* app, const char* marker) {
    const auto bytes = vesper::host::Board::get().read(app->address, app->size);
    const std::string text(bytes.begin(), bytes.end());
    return text.find(marker) != std::string::npos;
}

}  // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    vesper::host::BoardOptions options;
    options.argv.push_back(argv[0]);
    bool write_only = false;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--help" || arg == "-h") {
            std::cout << kUsage;
            return 0;
        }
        if (arg == "--write-only") {
            write_only = true;
            continue;
        }
        if (i + 1 >= argc) return usage_error(arg.rfind("--", 0) == 0 ? arg + " needs a value" : "unknown argument `" + arg + "`");
        const std::string value = argv[++i];
        long long number = 0;
        if (arg == "--flash") {
            options.flash_path = value;
        } else if (arg == "--table") {
            options.table_path = value;
        } else if (arg == "--nvs") {
            options.nvs_path = value;
        } else if (arg == "--app") {
            options.app_path = value;
        } else if (arg == "--wifi") {
            const auto colon = value.find(':');
            if (colon == std::string::npos || colon == 0) return usage_error("--wifi needs SSID:PASSWORD");
            options.wifi_ssid = value.substr(0, colon);
            options.wifi_pass = value.substr(colon + 1);
        } else if (arg == "--ota-base") {
            options.ota_base = value;
        } else if (arg == "--board") {
            options.board = value;
        } else if (arg == "--mac") {
            if (!parse_mac(value, options.mac)) return usage_error("--mac needs AA:BB:CC:DD:EE:FF");
        } else if (arg == "--rssi") {
            if (!parse_number(value, -127, 0, number)) return usage_error("--rssi needs -127 to 0");
            options.rssi = static_cast<int>(number);
        } else if (arg == "--clock-start-ms") {
            if (!parse_number(value, 0, 1LL << 50, number)) return usage_error("--clock-start-ms needs a number of ms");
            options.clock_start_ms = static_cast<std::uint64_t>(number);
        } else {
            return usage_error("unknown argument `" + arg + "`");
        }
        if (!one_time(arg)) {
            options.argv.push_back(arg);
            options.argv.push_back(value);
        }
    }
    if (options.flash_path.empty()) return usage_error("--flash is required");

    auto& board = vesper::host::Board::get();
    std::string error;
    if (!board.power_on(options, error)) {
        std::cout << "E (0) boot: " << error << "\r\n";
        return 3;
    }
    if (write_only) return 0;
    const auto running = vesper::host::boot_select(error);
    if (!running) {
        std::cout << error << "\r\n";
        return 3;
    }
    vesper::host::load_app_description(*running);
    board.set_radio_broken(image_contains(*running, "vesper-host-fault:no-network"));

    // initArduino(): with CONFIG_APP_ROLLBACK_ENABLE, a pending update is marked valid here unless
    // the application defers it.
    if (!verifyRollbackLater()) {
        esp_ota_img_states_t state;
        if (esp_ota_get_state_partition(*running, &state) == ESP_OK && state == ESP_OTA_IMG_PENDING_VERIFY) {
            esp_ota_mark_app_valid_cancel_rollback();
        }
    }
    setup();
    for (;;) loop();
}
