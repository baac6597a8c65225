// Host board layer (a stand-in, not ESP-IDF): the built-in certificate bundle (esp-idf v5.3.2
// components/mbedtls/esp_crt_bundle/include/esp_crt_bundle.h:32 esp_crt_bundle_attach). ESP-IDF's default bundle is
// Mozilla's CA list; on the host the same list is Debian's ca-certificates (/etc/ssl/certs).
#pragma once

#include "esp_err.h"

esp_err_t esp_crt_bundle_attach(void* conf);
