#include "doctest_compat.h"

#include <algorithm>
#include <string>
#include <vector>

#include "ota.h"

using namespace vesper;

namespace {
const char* kAbcSha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

Release abc() { return Release{"1.0.2", kAbcSha, 3, "v1.0.2.bin"}; }

OtaVerifier::Result stream(const Release& r, const std::string& image, std::size_t piece,
                           const std::string& project = "") {
    OtaVerifier v(r, project);
    for (std::size_t at = 0; at < image.size(); at += piece) {
        const auto n = std::min(piece, image.size() - at);
        if (!v.feed(reinterpret_cast<const std::uint8_t*>(image.data() + at), n)) break;
    }
    return v.finish();
}
// An ESP-IDF app image as esptool's format describes it, written by hand: magic 0xE9, then at byte
// 32 the esp_app_desc_t (magic 32 54 CD AB, version at +16, project name at +48), then a body.
std::string app_image(const std::string& version, const std::string& project) {
    std::string image(512, '\0');
    image[0] = static_cast<char>(0xE9);
    const unsigned char magic[] = {0x32, 0x54, 0xCD, 0xAB};
    for (int i = 0; i < 4; ++i) image[32 + i] = static_cast<char>(magic[i]);
    image.replace(32 + 16, version.size(), version);
    image.replace(32 + 48, project.size(), project);
    for (std::size_t i = 288; i < image.size(); ++i) image[i] = static_cast<char>(i * 7);
    return image;
}

Release release_of(const std::string& image, const std::string& version) {
    Sha256 hash;
    hash.update(reinterpret_cast<const std::uint8_t*>(image.data()), image.size());
    return Release{version, hash.finish_hex(), image.size(), "v.bin"};
}
}  // namespace

TEST_CASE("ota: latest.json as the backend publishes it") {
    const auto parsed = parse_release(
        R"({"name":"bellcore-v2","version":"1.0.2","builds":[{"chipFamily":"ESP32","parts":[]}],"app":"firmware.bin",)"
        R"("size":3,"sha256":"BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD","url":"v1.0.2.bin"})");
    REQUIRE(parsed.release);
    CHECK(parsed.release->version == "1.0.2");
    CHECK(parsed.release->sha256 == kAbcSha);  // lower-cased
    CHECK(parsed.release->size == 3);
    CHECK(parsed.release->url == "v1.0.2.bin");
}

TEST_CASE("ota: a release description missing anything is refused with the reason") {
    const std::string sha = kAbcSha;
    const std::pair<std::string, std::string> cases[] = {
        {"[]", "not a JSON object"},
        {R"({"sha256":")" + sha + R"(","size":3,"url":"a"})", "no semantic `version`"},
        {R"({"version":"latest","sha256":")" + sha + R"(","size":3,"url":"a"})", "no semantic `version`"},
        {R"({"version":"1.0.0","sha256":"abc","size":3,"url":"a"})", "no 64-digit `sha256`"},
        {R"({"version":"1.0.0","sha256":")" + std::string(64, 'g') + R"(","size":3,"url":"a"})",
         "`sha256` is not hexadecimal"},
        {R"({"version":"1.0.0","sha256":")" + sha + R"(","size":0,"url":"a"})", "no `size` between 1 byte and 16 MiB"},
        {R"({"version":"1.0.0","sha256":")" + sha + R"(","size":16777217,"url":"a"})",
         "no `size` between 1 byte and 16 MiB"},
        {R"({"version":"1.0.0","sha256":")" + sha + R"(","size":"3","url":"a"})", "no `size` between 1 byte and 16 MiB"},
        {R"({"version":"1.0.0","sha256":")" + sha + R"(","size":3})", "no `url`"},
    };
    for (const auto& [json, reason] : cases) {
        INFO(json);
        const auto parsed = parse_release(json);
        CHECK_FALSE(parsed.release);
        CHECK(parsed.error == reason);
    }
}

TEST_CASE("ota: only a higher version is taken") {
    auto r = abc();
    CHECK(decide("1.0.1", r) == OtaDecision::Update);
    CHECK(decide("1.0.2", r) == OtaDecision::UpToDate);
    CHECK(decide("1.0.10", r) == OtaDecision::Older);
    CHECK(decide("1.0.2-rc.1", r) == OtaDecision::Update);
    CHECK(decide("unknown", r) == OtaDecision::BadVersion);
    CHECK(std::string(decision_name(OtaDecision::Older)) == "older");
}

TEST_CASE("ota: the image is checked while it streams") {
    const auto r = abc();
    CHECK(stream(r, "abc", 1) == OtaVerifier::Result::NotAnApp);  // the announced bytes, but no app
    CHECK(stream(r, "abc", 64) == OtaVerifier::Result::NotAnApp);
    CHECK(stream(r, "abd", 2) == OtaVerifier::Result::Sha256Mismatch);
    CHECK(stream(r, "ab", 1) == OtaVerifier::Result::TooShort);
    CHECK(stream(r, "abcd", 1) == OtaVerifier::Result::TooLarge);
    OtaVerifier v(r, "");
    const std::uint8_t four[] = {'a', 'b', 'c', 'd'};
    CHECK_FALSE(v.feed(four, 4));  // refused at once, before a byte is written
    CHECK(v.received() == 0);
    CHECK(std::string(result_name(OtaVerifier::Result::Sha256Mismatch)) == "ota sha256 mismatch");
}

TEST_CASE("ota: the app must be the announced version of this project") {
    const auto image = app_image("1.1.0", "vesper-demo");
    CHECK(stream(release_of(image, "1.1.0"), image, 1, "vesper-demo") == OtaVerifier::Result::Ok);
    CHECK(stream(release_of(image, "1.1.0"), image, 100, "") == OtaVerifier::Result::Ok);
    CHECK(stream(release_of(image, "1.2.0"), image, 7, "vesper-demo") == OtaVerifier::Result::VersionMismatch);
    CHECK(stream(release_of(image, "1.1.0"), image, 64, "other-board") == OtaVerifier::Result::ProjectMismatch);
    auto no_magic = image;
    no_magic[32] = 0;
    CHECK(stream(release_of(no_magic, "1.1.0"), no_magic, 64, "") == OtaVerifier::Result::NotAnApp);
    const auto desc = read_app_description(reinterpret_cast<const std::uint8_t*>(image.data()), image.size());
    REQUIRE(desc);
    CHECK(desc->version == "1.1.0");
    CHECK(desc->project_name == "vesper-demo");
    CHECK_FALSE(read_app_description(reinterpret_cast<const std::uint8_t*>(image.data()), 100));
}

TEST_CASE("ota: the image URL is resolved against latest.json's") {
    const std::string base = "http://10.0.0.5:8080/ota/bellcore-v2/latest.json";
    CHECK(resolve_url(base, "v1.0.2.bin") == "http://10.0.0.5:8080/ota/bellcore-v2/v1.0.2.bin");
    CHECK(resolve_url(base, "/ota/x/y.bin") == "http://10.0.0.5:8080/ota/x/y.bin");
    CHECK(resolve_url(base, "https://cdn.example.com/a.bin") == "https://cdn.example.com/a.bin");
    CHECK(resolve_url("http://h/ota/b/latest.json?x=/y", "a.bin") == "http://h/ota/b/a.bin");
    CHECK(resolve_url("http://h", "a.bin") == "http://h/a.bin");
}
