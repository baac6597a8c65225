// Host board layer: the build flags a board build bakes in (-DVESPER_OTA_BASE, -DVESPER_BOARD),
// read from vesper-device's options instead, so one host binary serves every test's server.
#pragma once

#include <string>

std::string vesper_host_ota_base();
std::string vesper_host_board();
