#include "ota.h"

#include <algorithm>

#include "json.h"
#include "version.h"

namespace vesper {

ReleaseParse parse_release(std::string_view json) {
    const auto object = JsonObject::parse(json);
    if (!object) return {std::nullopt, "not a JSON object"};
    Release r;
    const auto version = object->string("version");
    if (!version || !Version::parse(*version)) return {std::nullopt, "no semantic `version`"};
    r.version = *version;
    const auto sha = object->string("sha256");
    if (!sha || sha->size() != 64) return {std::nullopt, "no 64-digit `sha256`"};
    for (char c : *sha) {
        const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if (!hex) return {std::nullopt, "`sha256` is not hexadecimal"};
        r.sha256 += (c >= 'A' && c <= 'F') ? static_cast<char>(c - 'A' + 'a') : c;
    }
    const auto size = object->unsigned_integer("size");
    if (!size || *size == 0 || *size > kMaxImageBytes) return {std::nullopt, "no `size` between 1 byte and 16 MiB"};
    r.size = *size;
    const auto url = object->string("url");
    if (!url || url->empty() || url->size() > 1024) return {std::nullopt, "no `url`"};
    r.url = *url;
    return {r, ""};
}

OtaDecision decide(std::string_view running_version, const Release& release) {
    const auto running = Version::parse(running_version);
    const auto offered = Version::parse(release.version);
    if (!running || !offered) return OtaDecision::BadVersion;
    const int order = compare(*offered, *running);
    if (order > 0) return OtaDecision::Update;
    return order == 0 ? OtaDecision::UpToDate : OtaDecision::Older;
}

const char* decision_name(OtaDecision decision) {
    switch (decision) {
        case OtaDecision::Update: return "update";
        case OtaDecision::UpToDate: return "up-to-date";
        case OtaDecision::Older: return "older";
        case OtaDecision::BadVersion: return "bad-version";
    }
    return "unknown";
}

std::string resolve_url(std::string_view base, std::string_view reference) {
    if (reference.find("://") != std::string_view::npos) return std::string(reference);
    const auto scheme = base.find("://");
    const auto path_at = scheme == std::string_view::npos ? std::string_view::npos : base.find('/', scheme + 3);
    const std::string_view origin = base.substr(0, path_at);
    if (!reference.empty() && reference[0] == '/') return std::string(origin) + std::string(reference);
    std::string_view dir = path_at == std::string_view::npos ? std::string_view("/") : base.substr(path_at);
    if (const auto query = dir.find_first_of("?#"); query != std::string_view::npos) dir = dir.substr(0, query);
    dir = dir.substr(0, dir.rfind('/') + 1);
    return std::string(origin) + std::string(dir) + std::string(reference);
}

namespace {

std::string fixed_text(const std::uint8_t* field, std::size_t len) {
    std::size_t n = 0;
    while (n < len && field[n] != 0) ++n;
    return std::string(reinterpret_cast<const char*>(field), n);
}

}  // namespace

std::optional<AppDescription> read_app_description(const std::uint8_t* image, std::size_t len) {
    constexpr std::uint8_t kImageMagic = 0xE9;
    constexpr std::uint32_t kDescMagic = 0xABCD5432;
    if (len < kAppDescriptionEnd || image[0] != kImageMagic) return std::nullopt;
    const std::uint8_t* desc = image + 32;
    const std::uint32_t magic = static_cast<std::uint32_t>(desc[0]) | static_cast<std::uint32_t>(desc[1]) << 8 |
                                static_cast<std::uint32_t>(desc[2]) << 16 | static_cast<std::uint32_t>(desc[3]) << 24;
    if (magic != kDescMagic) return std::nullopt;
    return AppDescription{fixed_text(desc + 16, 32), fixed_text(desc + 48, 32)};
}

OtaVerifier::OtaVerifier(const Release& release, std::string project)
    : size_(release.size), sha256_(release.sha256), version_(release.version), project_(std::move(project)) {}

bool OtaVerifier::feed(const std::uint8_t* data, std::size_t len) {
    if (overflow_ || received_ + len > size_) {
        overflow_ = true;
        return false;
    }
    if (head_.size() < kAppDescriptionEnd) {
        head_.append(reinterpret_cast<const char*>(data), std::min(len, kAppDescriptionEnd - head_.size()));
    }
    received_ += len;
    hash_.update(data, len);
    return true;
}

OtaVerifier::Result OtaVerifier::finish() {
    if (overflow_) return Result::TooLarge;
    if (received_ < size_) return Result::TooShort;
    if (hash_.finish_hex() != sha256_) return Result::Sha256Mismatch;
    const auto app = read_app_description(reinterpret_cast<const std::uint8_t*>(head_.data()), head_.size());
    if (!app) return Result::NotAnApp;
    if (app->version != version_) return Result::VersionMismatch;
    if (!project_.empty() && app->project_name != project_) return Result::ProjectMismatch;
    return Result::Ok;
}

const char* result_name(OtaVerifier::Result result) {
    switch (result) {
        case OtaVerifier::Result::Ok: return "ok";
        case OtaVerifier::Result::TooLarge: return "ota size mismatch (longer than announced)";
        case OtaVerifier::Result::TooShort: return "ota size mismatch (shorter than announced)";
        case OtaVerifier::Result::Sha256Mismatch: return "ota sha256 mismatch";
        case OtaVerifier::Result::NotAnApp: return "ota image has no app description";
        case OtaVerifier::Result::VersionMismatch: return "ota image version differs from the release";
        case OtaVerifier::Result::ProjectMismatch: return "ota image is another project";
    }
    return "unknown";
}

}  // namespace vesper
