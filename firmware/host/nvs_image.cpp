#include "nvs_image.h"

#include <algorithm>

namespace vesper::host {
namespace {

constexpr std::size_t kPage = 4096;
constexpr std::size_t kEntriesAt = 64;
constexpr std::size_t kEntry = 32;
constexpr std::size_t kEntriesPerPage = 126;
constexpr std::uint32_t kPageActive = 0xFFFFFFFE;
constexpr std::uint32_t kPageFull = 0xFFFFFFFC;
constexpr std::uint8_t kWritten = 0b10;

std::uint32_t word(const std::uint8_t* p) {
    return std::uint32_t(p[0]) | (std::uint32_t(p[1]) << 8) | (std::uint32_t(p[2]) << 16) |
           (std::uint32_t(p[3]) << 24);
}

struct Entry {
    std::uint8_t ns, type;
    std::string key;
    const std::uint8_t* data;     // the 8-byte data field
    const std::uint8_t* payload;  // the entries after the header
    std::size_t payload_len;
};

void page_entries(const std::uint8_t* page, std::vector<Entry>& out) {
    const std::uint8_t* bitmap = page + 32;
    std::size_t i = 0;
    while (i < kEntriesPerPage) {
        const std::uint8_t state = (bitmap[i / 4] >> ((i % 4) * 2)) & 0b11;
        if (state != kWritten) {
            ++i;
            continue;
        }
        const std::uint8_t* raw = page + kEntriesAt + i * kEntry;
        const std::size_t span = std::max<std::size_t>(raw[2], 1);
        std::uint8_t covered[28];
        std::copy(raw, raw + 4, covered);
        std::copy(raw + 8, raw + 32, covered + 4);
        if (nvs_crc32(covered, 28) == word(raw + 4) && i + span <= kEntriesPerPage) {
            std::size_t key_len = 0;
            while (key_len < 16 && raw[8 + key_len] != 0) ++key_len;
            out.push_back({raw[0], raw[1], std::string(reinterpret_cast<const char*>(raw + 8), key_len), raw + 24,
                           raw + kEntry, (span - 1) * kEntry});
        }
        i += span;
    }
}

std::optional<NvsValue> decode(const Entry& e) {
    NvsValue v{};
    const int width = e.type & 0x0F;
    auto integer = [&](NvsValue::Type t) {
        v.type = t;
        for (int b = width - 1; b >= 0; --b) v.bits = (v.bits << 8) | e.data[b];
        return v;
    };
    switch (e.type) {
        case 0x01: return integer(NvsValue::Type::U8);
        case 0x11: return integer(NvsValue::Type::I8);
        case 0x02: return integer(NvsValue::Type::U16);
        case 0x12: return integer(NvsValue::Type::I16);
        case 0x04: return integer(NvsValue::Type::U32);
        case 0x14: return integer(NvsValue::Type::I32);
        case 0x08: return integer(NvsValue::Type::U64);
        case 0x18: return integer(NvsValue::Type::I64);
        case 0x21: {
            const std::size_t size = std::size_t(e.data[0]) | (std::size_t(e.data[1]) << 8);
            if (size == 0 || size > e.payload_len || nvs_crc32(e.payload, size) != word(e.data + 4)) return std::nullopt;
            v.type = NvsValue::Type::String;
            v.text.assign(reinterpret_cast<const char*>(e.payload), size - 1);  // without the NUL
            return v;
        }
        case 0x41: {  // a version 1 blob: one item, its bytes in the entries after it
            const std::size_t size = std::size_t(e.data[0]) | (std::size_t(e.data[1]) << 8);
            if (size > e.payload_len || nvs_crc32(e.payload, size) != word(e.data + 4)) return std::nullopt;
            v.type = NvsValue::Type::Blob;
            v.bits = size;
            return v;
        }
        case 0x48:
            v.type = NvsValue::Type::Blob;
            v.bits = word(e.data);
            return v;
        default: return std::nullopt;
    }
}

}  // namespace

std::uint32_t nvs_crc32(const std::uint8_t* data, std::size_t len) {
    std::uint32_t value = 0;
    for (std::size_t i = 0; i < len; ++i) {
        value ^= data[i];
        for (int bit = 0; bit < 8; ++bit) value = (value & 1) ? (value >> 1) ^ 0xEDB88320u : value >> 1;
    }
    return ~value;
}

std::optional<NvsImage> NvsImage::read(const std::vector<std::uint8_t>& image, const std::string& ns) {
    if (image.empty() || image.size() % kPage != 0) return std::nullopt;
    std::vector<std::pair<std::uint32_t, const std::uint8_t*>> pages;
    for (std::size_t at = 0; at < image.size(); at += kPage) {
        const std::uint8_t* page = image.data() + at;
        const std::uint32_t state = word(page);
        if ((state == kPageActive || state == kPageFull) && nvs_crc32(page + 4, 24) == word(page + 28)) {
            pages.emplace_back(word(page + 4), page);
        }
    }
    std::sort(pages.begin(), pages.end());
    std::vector<Entry> entries;
    for (const auto& [sequence, page] : pages) page_entries(page, entries);
    std::optional<std::uint8_t> index;
    for (const auto& e : entries) {
        if (e.ns == 0 && e.type == 0x01 && e.key == ns && e.data[0] != 0) index = e.data[0];
    }
    if (!index) return std::nullopt;
    NvsImage out;
    for (const auto& e : entries) {
        if (e.ns != *index) continue;
        if (auto v = decode(e)) out.values_[e.key] = std::move(*v);
    }
    return out;
}

std::optional<NvsType> NvsImage::type_of(const char* key) const {
    const auto it = values_.find(key);
    if (it == values_.end()) return std::nullopt;
    return it->second.type;
}

std::optional<std::string> NvsImage::get_string(const char* key) const {
    const auto it = values_.find(key);
    if (it == values_.end() || it->second.type != NvsValue::Type::String) return std::nullopt;
    return it->second.text;
}

std::optional<std::uint64_t> NvsImage::get_unsigned(const char* key) const {
    const auto it = values_.find(key);
    if (it == values_.end()) return std::nullopt;
    switch (it->second.type) {
        case NvsType::U8:
        case NvsType::U16:
        case NvsType::U32:
        case NvsType::U64: return it->second.bits;
        default: return std::nullopt;
    }
}

}  // namespace vesper::host
