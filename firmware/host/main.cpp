// vesper-device: the firmware's core on a host, for end-to-end tests against the real broker
// and backend. Reads an nvs.bin as the board would, then behaves as the firmware does.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "console.h"
#include "nvs_image.h"
#include "runner.h"

#ifndef VESPER_BOARD
#define VESPER_BOARD "bellcore-v2"
#endif
#ifndef VESPER_FIRMWARE_VERSION
#define VESPER_FIRMWARE_VERSION "1.0.0"
#endif

namespace {

std::atomic<bool> g_stop{false};

void on_signal(int) { g_stop = true; }

const char* kUsage =
    "usage: vesper-device --nvs NVS.bin [--broker HOST:PORT] [--api URL] [--fw VERSION]\n"
    "                     [--board NAME] [--heartbeat-s N] [--once]\n"
    "\n"
    "Runs the firmware's core (firmware/lib/vesper_core) on this machine: reads namespace\n"
    "`vesper` of an NVS partition image as the board would, prints the board's console lines,\n"
    "logs in to the broker with the device's credentials, sends heartbeats and obeys control\n"
    "commands ({\"cmd\":\"ota\"}, {\"cmd\":\"reboot\"}).\n"
    "\n"
    "  --nvs NVS.bin      the device's NVS partition (e.g. GET /manufacturing/devices/SN/nvs.bin)\n"
    "  --broker HOST:PORT the MQTT broker (default: mqtt_host and mqtt_port from the NVS)\n"
    "  --api URL          where /ota/BOARD/latest.json is served, for OTA (default: no OTA)\n"
    "  --fw VERSION       the running firmware's version (default " VESPER_FIRMWARE_VERSION ")\n"
    "  --board NAME       the board (PlatformIO environment) it was built for (default " VESPER_BOARD ")\n"
    "  --heartbeat-s N    seconds between heartbeats (default 60)\n"
    "  --once             exit 0 after the first heartbeat the broker acknowledged\n"
    "\n"
    "Exit codes: 0 done, 1 stopped by an error, 2 bad command line, 3 the NVS is unusable.\n";

int usage_error(const std::string& message) {
    std::cerr << "vesper-device: " << message << "\n\n" << kUsage;
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    std::string nvs_path, broker;
    vesper::host::RunnerOptions options;
    options.board = VESPER_BOARD;
    options.firmware_version = VESPER_FIRMWARE_VERSION;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        auto value = [&](std::string& into) {
            if (i + 1 >= argc) return false;
            into = argv[++i];
            return true;
        };
        std::string number;
        if (arg == "--help" || arg == "-h") {
            std::cout << kUsage;
            return 0;
        } else if (arg == "--once") {
            options.once = true;
        } else if (arg == "--nvs") {
            if (!value(nvs_path)) return usage_error("--nvs needs a file");
        } else if (arg == "--broker") {
            if (!value(broker)) return usage_error("--broker needs HOST:PORT");
        } else if (arg == "--api") {
            if (!value(options.api)) return usage_error("--api needs a URL");
        } else if (arg == "--fw") {
            if (!value(options.firmware_version)) return usage_error("--fw needs a version");
        } else if (arg == "--board") {
            if (!value(options.board)) return usage_error("--board needs a name");
        } else if (arg == "--heartbeat-s") {
            if (!value(number) || number.empty() || number.find_first_not_of("0123456789") != std::string::npos ||
                number.size() > 6 || std::stoul(number) == 0) {
                return usage_error("--heartbeat-s needs a positive number of seconds");
            }
            options.heartbeat_s = static_cast<std::uint32_t>(std::stoul(number));
        } else {
            return usage_error("unknown argument `" + arg + "`");
        }
    }
    if (nvs_path.empty()) return usage_error("--nvs is required");

    std::ifstream file(nvs_path, std::ios::binary);
    if (!file) {
        std::cout << vesper::console::error("nvs cannot read " + nvs_path) << std::endl;
        return 3;
    }
    const std::vector<std::uint8_t> image((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    const auto nvs = vesper::host::NvsImage::read(image, vesper::kNamespace);
    if (!nvs) {
        std::cout << vesper::console::error("nvs has no namespace vesper") << std::endl;
        return 3;
    }
    const auto read = vesper::read_identity(*nvs);
    if (!read.identity) {
        std::cout << vesper::console::error("nvs " + read.describe()) << std::endl;
        return 3;
    }
    options.broker_host = read.identity->mqtt_host;
    options.broker_port = read.identity->mqtt_port;
    if (!broker.empty()) {
        const auto colon = broker.rfind(':');
        const std::string port = colon == std::string::npos ? "" : broker.substr(colon + 1);
        if (colon == 0 || port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
            std::stoul(port) == 0 || std::stoul(port) > 65535) {
            return usage_error("--broker needs HOST:PORT, got `" + broker + "`");
        }
        options.broker_host = broker.substr(0, colon);
        options.broker_port = static_cast<std::uint16_t>(std::stoul(port));
    }
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    return vesper::host::run_device(*read.identity, options, g_stop);
}
