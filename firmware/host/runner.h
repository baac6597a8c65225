// The device's firmware loop on a host: the core's Session over libmosquitto, OTA over libcurl,
// console lines on stdout. What src/main.cpp does on a board, minus Wi-Fi and flash writes.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "identity.h"

namespace vesper::host {

struct RunnerOptions {
    std::string broker_host;
    std::uint16_t broker_port = 1883;
    std::string api;    // base URL of the OTA files (`/ota/...` below it); empty: no OTA
    std::string board;  // the PlatformIO environment the firmware was built for
    std::string firmware_version;
    std::uint32_t heartbeat_s = 60;
    bool once = false;  // exit 0 after the first heartbeat the broker acknowledged
};

// Runs until stopped (or, with `once`, the first acknowledged heartbeat). Returns the exit code.
int run_device(const Identity& identity, RunnerOptions options, const std::atomic<bool>& stop);

}  // namespace vesper::host
