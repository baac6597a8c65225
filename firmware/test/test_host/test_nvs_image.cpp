// The NVS image reader against the images Espressif's nvs_partition_gen.py made
// (tests/vectors/nvs): every key of every namespace read back as its CSV row says.
#include "../test_core/doctest_compat.h"

#include <algorithm>
#include <sstream>

#include "../test_core/vectors.h"
#include "nvs_image.h"

using vesper::host::NvsImage;
using vesper::host::NvsValue;

namespace {

struct Row {
    std::string ns, key, encoding, value;
};

// The data rows of an NVS CSV, each with the namespace it belongs to.
std::vector<Row> csv_rows(const std::string& name) {
    const auto bytes = vectors::bytes("nvs/" + name);
    std::istringstream in(std::string(bytes.begin(), bytes.end()));
    std::vector<Row> rows;
    std::string line, ns;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
        std::vector<std::string> f;
        std::string field;
        std::istringstream split(line);
        while (std::getline(split, field, ',')) f.push_back(field);
        if (f.size() >= 2 && f[1] == "namespace") ns = f[0];
        else if (f.size() == 4) rows.push_back({ns, f[0], f[2], f[3]});
    }
    return rows;
}

std::string rendered(const NvsValue& v) {
    const int width = v.type == NvsValue::Type::I8 ? 8 : v.type == NvsValue::Type::I16 ? 16
                      : v.type == NvsValue::Type::I32 ? 32 : 64;
    switch (v.type) {
        case NvsValue::Type::String: return v.text;
        case NvsValue::Type::Blob: return "<" + std::to_string(v.bits) + " bytes>";
        case NvsValue::Type::I8:
        case NvsValue::Type::I16:
        case NvsValue::Type::I32:
        case NvsValue::Type::I64: {
            std::uint64_t bits = v.bits;
            if (width < 64 && (bits >> (width - 1)) & 1) bits |= ~((std::uint64_t(1) << width) - 1);
            return std::to_string(static_cast<std::int64_t>(bits));
        }
        default: return std::to_string(v.bits);
    }
}

std::string expected(const Row& r) {
    if (r.encoding == "hex2bin") return "<" + std::to_string(r.value.size() / 2) + " bytes>";
    return r.value;
}

}  // namespace

TEST_CASE("nvs image: every vector made by Espressif's generator reads back as its CSV") {
    int images = 0, keys = 0;
    for (const auto& m : vectors::rows("nvs/manifest.tsv")) {
        if (m[0] == "name" || m[6] != "ok") continue;
        const auto image = vectors::bytes("nvs/" + m[2]);
        const auto rows = csv_rows(m[1]);
        for (const auto& r : rows) {
            INFO(m[0] << ": " << r.ns << "/" << r.key);
            const auto read = NvsImage::read(image, r.ns);
            REQUIRE(read);
            const auto it = read->values().find(r.key);
            REQUIRE(it != read->values().end());
            CHECK(rendered(it->second) == expected(r));
            ++keys;
        }
        ++images;
    }
    CHECK(images == 10);
    CHECK(keys > 150);
}

TEST_CASE("nvs image: typed getters for the identity keys") {
    const auto image = vectors::bytes("nvs/p02_primitives.bin");
    const auto nvs = NvsImage::read(image, "vesper");
    REQUIRE(nvs);
    CHECK(nvs->get_string("serial_number") == "PV-26A18-BC02R-X7KQA");
    CHECK(nvs->get_unsigned("f_u16") == 60000u);
    CHECK(nvs->type_of("f_u16") == vesper::NvsType::U16);
    CHECK(nvs->type_of("f_u8") == vesper::NvsType::U8);
    CHECK_FALSE(nvs->type_of("missing_key"));
    CHECK_FALSE(nvs->get_unsigned("serial_number"));  // a string is not a number
    CHECK_FALSE(nvs->get_string("f_u16"));       // nor a string
    CHECK_FALSE(nvs->get_string("missing_key"));
    CHECK_FALSE(NvsImage::read(image, "calib"));  // no such namespace
}

TEST_CASE("nvs image: damaged entries are skipped, a damaged image refused") {
    auto image = vectors::bytes("nvs/p01_minimal.bin");
    REQUIRE(NvsImage::read(image, "vesper")->get_string("serial_number"));
    // Find the serial number's text and change one character: its string CRC no longer matches.
    const std::string sn = "PV-26A18-BC02R-X7KQA";
    auto at = std::search(image.begin(), image.end(), sn.begin(), sn.end());
    REQUIRE(at != image.end());
    *(at + 3) = '9';
    const auto damaged = NvsImage::read(image, "vesper");
    REQUIRE(damaged);
    CHECK_FALSE(damaged->get_string("serial_number"));
    CHECK(damaged->get_string("hw_type") == "BC");
    // A page header's CRC broken: the whole page is not a page.
    image[4] ^= 0x01;
    CHECK_FALSE(NvsImage::read(image, "vesper"));
    image.resize(100);
    CHECK_FALSE(NvsImage::read(image, "vesper"));
}
