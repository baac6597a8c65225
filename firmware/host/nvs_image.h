// The host board's stand-in for ESP-IDF's nvs_get_*: reads one namespace of an NVS partition
// image as nvs_flash does at boot (4096-byte pages, CRC-checked entries, strings spanning
// entries), so the host build of the firmware boots from the same nvs.bin the station flashes.
// Follows esp-idf v5.3.2 components/nvs_flash/src/nvs_page.cpp (:24 Page::load, :848 readEntry,
// :250 readItem) and include/nvs_handle.hpp:27 (ItemType): a key read with another type is ESP_ERR_NVS_TYPE_MISMATCH there, so
// the typed getters here answer nothing for it and type_of() says what it is.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "identity.h"

namespace vesper::host {

// One typed value of the namespace.
struct NvsValue {
    using Type = NvsType;
    Type type;
    std::uint64_t bits = 0;  // integers, two's complement for the signed types
    std::string text;        // strings, without the NUL
};

class NvsImage : public KeyValueSource {
  public:
    // The keys of `ns` in `image`; entries or pages whose CRC fails are skipped, as nvs_flash
    // skips them. nullopt when the image is not whole pages or has no such namespace.
    static std::optional<NvsImage> read(const std::vector<std::uint8_t>& image, const std::string& ns);

    const std::map<std::string, NvsValue>& values() const { return values_; }
    std::optional<NvsType> type_of(const char* key) const override;
    std::optional<std::string> get_string(const char* key) const override;
    std::optional<std::uint64_t> get_unsigned(const char* key) const override;

  private:
    std::map<std::string, NvsValue> values_;
};

// ESP-IDF's CRC-32 (esp_rom_crc32_le as NVS calls it).
std::uint32_t nvs_crc32(const std::uint8_t* data, std::size_t len);

}  // namespace vesper::host
