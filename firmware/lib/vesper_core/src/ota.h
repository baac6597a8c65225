// Over-the-air updates: what `/ota/{board}/latest.json` announces, whether to take it (only a
// higher semantic version), and the check of the image while it streams to the spare partition
// (exactly the announced size, the announced SHA-256) before the device may boot it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "sha256.h"

namespace vesper {

// Largest application image a device accepts (the biggest ESP32 app partition is 16 MiB).
constexpr std::uint64_t kMaxImageBytes = 16ull * 1024 * 1024;

// A release as `latest.json` describes it: {"version","sha256","size","url"}.
struct Release {
    std::string version;
    std::string sha256;  // 64 lower-case hex digits
    std::uint64_t size = 0;
    std::string url;  // absolute, or relative to latest.json
};

struct ReleaseParse {
    std::optional<Release> release;
    std::string error;  // why not, when release is empty
};

ReleaseParse parse_release(std::string_view json);

enum class OtaDecision {
    Update,      // the release is higher than the running firmware
    UpToDate,    // the same version
    Older,       // a lower version: never downgrade
    BadVersion,  // either version is not a semantic version
};

OtaDecision decide(std::string_view running_version, const Release& release);
const char* decision_name(OtaDecision decision);

// `reference` resolved against `base` (the URL latest.json came from), as a browser would for
// the forms a release uses: absolute (`http://...`), host-relative (`/ota/...`), or relative.
std::string resolve_url(std::string_view base, std::string_view reference);

// What an ESP-IDF application says about itself: its `esp_app_desc_t` (256 bytes at byte 32 of
// the image, after the 24-byte image header and the first 8-byte segment header; magic
// 0xABCD5432, `char version[32]` at 16, `char project_name[32]` at 48).
struct AppDescription {
    std::string version, project_name;
};
constexpr std::size_t kAppDescriptionEnd = 32 + 256;
// nullopt when `image` (its first bytes) is not an app image with a description.
std::optional<AppDescription> read_app_description(const std::uint8_t* image, std::size_t len);

// Checks an image while it is written: refuses a byte past the announced size at once, and at
// the end a short image, a different SHA-256, or an app that is not the announced version of
// this project (so a mislabelled release is refused before the switch).
class OtaVerifier {
  public:
    enum class Result { Ok, TooLarge, TooShort, Sha256Mismatch, NotAnApp, VersionMismatch, ProjectMismatch };

    // `project`: the running app's project name; empty accepts any.
    OtaVerifier(const Release& release, std::string project);
    // False once the image is longer than announced (stop writing then).
    bool feed(const std::uint8_t* data, std::size_t len);
    Result finish();
    std::uint64_t received() const { return received_; }

  private:
    std::uint64_t size_;
    std::string sha256_;
    std::string version_, project_;
    std::uint64_t received_ = 0;
    bool overflow_ = false;
    Sha256 hash_;
    std::string head_;  // the image's first kAppDescriptionEnd bytes
};

const char* result_name(OtaVerifier::Result result);

}  // namespace vesper
