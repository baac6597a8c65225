// Stub of the Arduino-ESP32 core's HTTPClient.h.
#pragma once
#include "WiFi.h"

class HTTPClient {
  public:
    bool begin(String url);
    int GET();
    String getString();
    void end();
    bool connected();
    WiFiClient* getStreamPtr();
};
