// Vesper's device logic, portable C++17 with no Arduino or ESP-IDF header: the firmware's
// src/main.cpp is thin I/O around it, on a board and on the host (firmware/host/).
#pragma once

#include "console.h"
#include "identity.h"
#include "json.h"
#include "lifecycle.h"
#include "messages.h"
#include "ota.h"
#include "serial.h"
#include "session.h"
#include "sha256.h"
#include "version.h"
