// Host board layer (a stand-in, not ESP-IDF): ESP-IDF's HTTP client (esp-idf v5.3.2
// components/esp_http_client/include/esp_http_client.h:192 esp_http_client_config_t, :241 init,
// :499 open, :525 fetch_headers, :550 read, :583 close, :597 cleanup; esp_http_client.c:1615
// open, :1383 fetch_headers, :1184 read), streaming reads over libcurl and real sockets. Kept from
// the real client and esp-tls (components/esp-tls/esp_tls_mbedtls.c:680 set_client_config, :742
// the bundle, :787 the refusal):
// - https:// verifies the server: with `cert_pem` against that CA only, with `crt_bundle_attach`
//   against the bundle; with neither, opening fails ("No server verification option set in
//   esp_tls_cfg_t structure"); the host name is checked unless skip_cert_common_name_check;
// - open / fetch_headers / read / close / cleanup, read() returning the bytes read, 0 at the end
//   of the body and -1 on an error; redirects are not followed by open() (the application asks);
// - timeout_ms (default 5000) bounds each network wait.
// The transport only works while the host board's Wi-Fi is connected.
#pragma once

#include <cstddef>
#include <cstdint>

#include "esp_err.h"

typedef struct esp_http_client* esp_http_client_handle_t;

typedef enum { HTTP_METHOD_GET = 0, HTTP_METHOD_POST, HTTP_METHOD_PUT, HTTP_METHOD_HEAD } esp_http_client_method_t;

typedef struct {
    const char* url;
    const char* host;
    int port;
    const char* username;
    const char* password;
    const char* path;
    const char* query;
    const char* cert_pem;
    size_t cert_len;
    esp_http_client_method_t method;
    int timeout_ms;
    bool disable_auto_redirect;
    int max_redirection_count;
    int buffer_size;
    int buffer_size_tx;
    bool is_async;
    bool use_global_ca_store;
    bool skip_cert_common_name_check;
    const char* common_name;
    esp_err_t (*crt_bundle_attach)(void* conf);
    bool keep_alive_enable;
} esp_http_client_config_t;

esp_http_client_handle_t esp_http_client_init(const esp_http_client_config_t* config);
esp_err_t esp_http_client_open(esp_http_client_handle_t client, int write_len);
int64_t esp_http_client_fetch_headers(esp_http_client_handle_t client);
int esp_http_client_get_status_code(esp_http_client_handle_t client);
int esp_http_client_read(esp_http_client_handle_t client, char* buffer, int len);
esp_err_t esp_http_client_close(esp_http_client_handle_t client);
esp_err_t esp_http_client_cleanup(esp_http_client_handle_t client);
