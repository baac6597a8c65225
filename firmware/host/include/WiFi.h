// Host board layer (a stand-in, not the Arduino-ESP32 core): the station side of Arduino's WiFi
// (espressif/arduino-esp32 tag 3.1.1, libraries/WiFi/src/WiFiSTA.cpp WiFiSTAClass::begin and
// waitForConnectResult; the status values are wl_status_t of libraries/WiFi/src/WiFiType.h).
// The host board has one access point, named by the test (--wifi SSID:PASSWORD): begin() joins
// it only with that SSID and password; another SSID is WL_NO_SSID_AVAIL, a wrong password
// WL_CONNECT_FAILED (what waitForConnectResult() returns on a board for those). Sockets work
// only while connected.
#pragma once

#include <cstdint>

#include "WString.h"

typedef enum {
    WL_NO_SHIELD = 255,
    WL_STOPPED = 254,
    WL_IDLE_STATUS = 0,
    WL_NO_SSID_AVAIL = 1,
    WL_SCAN_COMPLETED = 2,
    WL_CONNECTED = 3,
    WL_CONNECT_FAILED = 4,
    WL_CONNECTION_LOST = 5,
    WL_DISCONNECTED = 6
} wl_status_t;

typedef enum { WIFI_OFF = 0, WIFI_STA = 1, WIFI_AP = 2, WIFI_AP_STA = 3 } wifi_mode_t;

class IPAddress {
  public:
    explicit IPAddress(uint32_t address = 0) : address_(address) {}
    String toString() const;

  private:
    uint32_t address_;
};

class WiFiClass {
  public:
    bool mode(wifi_mode_t mode);
    wl_status_t begin(const char* ssid, const char* passphrase = nullptr);
    uint8_t waitForConnectResult(unsigned long timeoutLength = 60000);
    wl_status_t status();
    IPAddress localIP();
    int8_t RSSI();
};

extern WiFiClass WiFi;
