// A test stand-in for ESP-IDF's nvs_get_*: reads one namespace of an NVS partition image as
// nvs_flash does at boot (4096-byte pages, CRC-checked entries, strings spanning entries), so
// the host runner boots from the same nvs.bin the station flashes. Not for a device: there the
// glue calls ESP-IDF itself.
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
    enum class Type { U8, I8, U16, I16, U32, I32, U64, I64, String, Blob };
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
    std::optional<std::string> get_string(const char* key) const override;
    std::optional<std::uint16_t> get_u16(const char* key) const override;

  private:
    std::map<std::string, NvsValue> values_;
};

// ESP-IDF's CRC-32 (esp_rom_crc32_le as NVS calls it).
std::uint32_t nvs_crc32(const std::uint8_t* data, std::size_t len);

}  // namespace vesper::host
