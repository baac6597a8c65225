#include "tls.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "board.h"

namespace vesper::host {

std::optional<TrustAnchors> trust_anchors(const char* certificate, bool bundle) {
    if (certificate != nullptr) {
        // The CA lives in memory on a board; a memory file gives the TLS library a path to it
        // that disappears with the process (and with a restart: close-on-exec).
        const int fd = memfd_create("vesper-ca", MFD_CLOEXEC);
        const std::size_t len = std::strlen(certificate);
        if (fd < 0 || ::write(fd, certificate, len) != static_cast<ssize_t>(len)) return std::nullopt;
        return TrustAnchors{"/proc/self/fd/" + std::to_string(fd), false, fd};
    }
    if (bundle) return TrustAnchors{kBundleFile, true, -1};
    std::printf("E (%lld) esp-tls-mbedtls: No server verification option set in esp_tls_cfg_t structure. Check esp_tls "
                "API reference\r\n",
                static_cast<long long>(Board::get().now_us() / 1000));
    return std::nullopt;
}

}  // namespace vesper::host
