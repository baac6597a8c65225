// Stub of the Arduino-ESP32 core's WiFi.h.
#pragma once
#include "Arduino.h"

typedef enum { WL_IDLE_STATUS = 0, WL_NO_SSID_AVAIL = 1, WL_CONNECTED = 3, WL_CONNECT_FAILED = 4, WL_DISCONNECTED = 6 } wl_status_t;
typedef enum { WIFI_OFF = 0, WIFI_STA = 1 } wifi_mode_t;

class IPAddress {
  public:
    String toString() const;
};

class Client {
  public:
    virtual ~Client() = default;
};

class WiFiClient : public Client {
  public:
    int setNoDelay(bool nodelay);
    size_t readBytes(uint8_t* buffer, size_t length);
};

class WiFiClass {
  public:
    bool mode(wifi_mode_t mode);
    wl_status_t begin(const char* ssid, const char* passphrase = nullptr);
    uint8_t waitForConnectResult(unsigned long timeoutLength = 60000);
    wl_status_t status();
    IPAddress localIP();
};
extern WiFiClass WiFi;
