// The host board's esp_http_client: open / fetch_headers / read / close over libcurl, which runs
// the transfer on a thread of its own and hands the body over through a bounded buffer, so the
// firmware pulls bytes as it does from esp_http_client_read() on a board. What it keeps from the
// real client and esp-tls is listed in include/esp_http_client.h.
#include <curl/curl.h>
#include <esp_http_client.h>
#include <unistd.h>

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "board.h"
#include "tls.h"

using vesper::host::Board;

struct esp_http_client {
    std::string url;
    const char* cert_pem = nullptr;
    bool bundle = false, skip_common_name = false;
    long timeout_ms = 5000;
    std::thread worker;
    std::mutex lock;
    std::condition_variable changed;
    std::string body;  // received, not yet read
    bool headers_done = false, finished = false, failed = false, abort = false;
    long status = -1;
    std::int64_t content_length = -1;
    int ca_fd = -1;
};

namespace {

constexpr std::size_t kMaxBuffered = 64 * 1024;

std::size_t on_body(char* data, std::size_t size, std::size_t count, void* user) {
    auto* client = static_cast<esp_http_client*>(user);
    std::unique_lock<std::mutex> guard(client->lock);
    client->changed.wait(guard, [&] { return client->abort || client->body.size() < kMaxBuffered; });
    if (client->abort) return 0;
    client->body.append(data, size * count);
    client->changed.notify_all();
    return size * count;
}

// The blank line after the headers: status and length for fetch_headers().
void headers_in(esp_http_client* client, CURL* curl) {
    long status = -1;
    curl_off_t length = -1;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
    std::lock_guard<std::mutex> guard(client->lock);
    client->status = status;
    client->content_length = length;
    client->headers_done = true;
    client->changed.notify_all();
}

struct HeaderContext {
    esp_http_client* client;
    CURL* curl;
};

std::size_t on_header_line(char* data, std::size_t size, std::size_t count, void* user) {
    auto* context = static_cast<HeaderContext*>(user);
    const std::string line(data, size * count);
    if (line == "\r\n" || line == "\n") headers_in(context->client, context->curl);
    return size * count;
}

void transfer(esp_http_client* client, std::string ca_file) {
    CURL* curl = curl_easy_init();
    HeaderContext context{client, curl};
    curl_easy_setopt(curl, CURLOPT_URL, client->url.c_str());
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, client->timeout_ms);
    // Each network wait is bounded: fewer than 1 byte/s for the timeout ends the transfer.
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, (client->timeout_ms + 999) / 1000);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header_line);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &context);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, client);
    if (!ca_file.empty()) {
        curl_easy_setopt(curl, CURLOPT_CAINFO, ca_file.c_str());
        curl_easy_setopt(curl, CURLOPT_CAPATH, nullptr);  // that CA alone
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, client->skip_common_name ? 0L : 2L);
    }
    const CURLcode rc = curl_easy_perform(curl);
    curl_easy_cleanup(curl);
    std::lock_guard<std::mutex> guard(client->lock);
    client->finished = true;
    client->failed = rc != CURLE_OK;
    client->changed.notify_all();
}

}  // namespace

esp_http_client_handle_t esp_http_client_init(const esp_http_client_config_t* config) {
    static std::once_flag library;
    std::call_once(library, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    if (config == nullptr || config->url == nullptr) return nullptr;
    auto* client = new esp_http_client;
    client->url = config->url;
    client->cert_pem = config->cert_pem;
    client->bundle = config->crt_bundle_attach != nullptr;
    client->skip_common_name = config->skip_cert_common_name_check;
    client->timeout_ms = config->timeout_ms > 0 ? config->timeout_ms : 5000;
    return client;
}

esp_err_t esp_http_client_open(esp_http_client_handle_t client, int) {
    if (client == nullptr || client->worker.joinable()) return ESP_ERR_INVALID_ARG;
    if (!Board::get().wifi_connected()) return ESP_ERR_HTTP_CONNECT;
    std::string ca_file;
    if (client->url.rfind("https://", 0) == 0) {
        const auto anchors = vesper::host::trust_anchors(client->cert_pem, client->bundle);
        if (!anchors) return ESP_ERR_HTTP_CONNECT;
        client->ca_fd = anchors->fd;
        ca_file = anchors->ca_file;
    }
    client->worker = std::thread(transfer, client, ca_file);
    std::unique_lock<std::mutex> guard(client->lock);
    client->changed.wait(guard, [&] { return client->headers_done || client->finished; });
    return client->headers_done ? ESP_OK : ESP_ERR_HTTP_CONNECT;
}

// The body's length from Content-Length; 0 without one (chunked), as esp_http_client answers;
// ESP_FAIL when no response head came.
int64_t esp_http_client_fetch_headers(esp_http_client_handle_t client) {
    if (client == nullptr || !client->headers_done) return ESP_FAIL;
    return client->content_length < 0 ? 0 : client->content_length;
}

int esp_http_client_get_status_code(esp_http_client_handle_t client) {
    return client == nullptr ? -1 : static_cast<int>(client->status);
}

int esp_http_client_read(esp_http_client_handle_t client, char* buffer, int len) {
    if (client == nullptr || len <= 0) return -1;
    std::unique_lock<std::mutex> guard(client->lock);
    client->changed.wait(guard, [&] { return !client->body.empty() || client->finished; });
    if (client->body.empty()) return client->failed ? -1 : 0;
    const std::size_t n = std::min(client->body.size(), static_cast<std::size_t>(len));
    client->body.copy(buffer, n);
    client->body.erase(0, n);
    client->changed.notify_all();
    return static_cast<int>(n);
}

esp_err_t esp_http_client_close(esp_http_client_handle_t client) {
    if (client == nullptr) return ESP_ERR_INVALID_ARG;
    {
        std::lock_guard<std::mutex> guard(client->lock);
        client->abort = true;
        client->changed.notify_all();
    }
    if (client->worker.joinable()) client->worker.join();
    return ESP_OK;
}

esp_err_t esp_http_client_cleanup(esp_http_client_handle_t client) {
    if (client == nullptr) return ESP_ERR_INVALID_ARG;
    esp_http_client_close(client);
    if (client->ca_fd >= 0) ::close(client->ca_fd);
    delete client;
    return ESP_OK;
}
