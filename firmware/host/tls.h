// How the host's MQTT and HTTP stand-ins verify a server, as esp-tls does (esp-idf v5.3.2
// components/esp-tls/esp_tls_mbedtls.c:680 set_client_config): against the configured CA alone, else against the certificate bundle,
// else not at all, which esp-tls refuses (:787, "No server verification option set").
#pragma once

#include <optional>
#include <string>

namespace vesper::host {

struct TrustAnchors {
    std::string ca_file;  // a file holding exactly the configured CA, or the bundle's file
    bool bundle = false;
    int fd = -1;  // the memory file behind ca_file; the client closes it when done
};

// `certificate`: the configured PEM (nullptr when none); `bundle`: crt_bundle_attach was set.
// nullopt (after the esp-tls error line) when neither is.
std::optional<TrustAnchors> trust_anchors(const char* certificate, bool bundle);

// Debian's ca-certificates: Mozilla's CA list, the list ESP-IDF's default bundle is made from.
constexpr const char* kBundleFile = "/etc/ssl/certs/ca-certificates.crt";

}  // namespace vesper::host
