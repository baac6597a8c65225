// libFuzzer harness for what the device reads from the network: control messages on its MQTT
// topic (parse_command over JsonObject::parse), release descriptions fetched over HTTPS
// (parse_release), and the versions in them (Version::parse, decide). Built with clang
// (-fsanitize=fuzzer,address,undefined) by scripts/fuzz; the corpus is firmware/fuzz/corpus.
//
// The first byte picks the parser; the rest is the input. Besides "no crash, no sanitizer
// report", each parser's own promises are checked: a parsed JSON object found its members, a
// release has a 64-hex-digit digest and a size within kMaxImageBytes, and a version compares
// equal to itself.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "json.h"
#include "messages.h"
#include "ota.h"
#include "version.h"

namespace {

void check(bool ok) {
    if (!ok) std::abort();
}

bool hex64(std::string_view text) {
    if (text.size() != 64) return false;
    for (char c : text) {
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
    switch (data[0] % 4) {
        case 0: {
            auto object = vesper::JsonObject::parse(input);
            if (object) {
                check(input.size() <= vesper::kMaxJsonBytes);
                (void)object->string("cmd");
                (void)object->unsigned_integer("size");
            }
            break;
        }
        case 1:
            (void)vesper::parse_command(input);
            break;
        case 2: {
            const auto parsed = vesper::parse_release(input);
            if (parsed.release) {
                check(hex64(parsed.release->sha256));
                check(parsed.release->size <= vesper::kMaxImageBytes);
                (void)vesper::decide("1.0.0", *parsed.release);
            } else {
                check(!parsed.error.empty());
            }
            break;
        }
        default: {
            const auto version = vesper::Version::parse(input);
            if (version) check(vesper::compare(*version, *version) == 0);
            break;
        }
    }
    return 0;
}
