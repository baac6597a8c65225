// Vesper's device logic, portable C++17 with no Arduino or ESP-IDF header: the firmware's
// src/main.cpp and the host runner (firmware/host/) are thin I/O around it.
#pragma once

#include "backoff.h"
#include "console.h"
#include "identity.h"
#include "json.h"
#include "messages.h"
#include "ota.h"
#include "serial.h"
#include "session.h"
#include "sha256.h"
#include "version.h"
