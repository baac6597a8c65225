// SHA-256 (FIPS 180-4) over a stream, so an OTA image is checked while it is written and never
// has to fit in memory. Portable: the glue may use mbedTLS instead, the result is the same.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace vesper {

class Sha256 {
  public:
    Sha256();
    void update(const std::uint8_t* data, std::size_t len);
    // The digest; the object is spent afterwards.
    std::array<std::uint8_t, 32> finish();
    // The digest as 64 lower-case hex digits.
    std::string finish_hex();

  private:
    void block(const std::uint8_t* p);
    std::array<std::uint32_t, 8> h_;
    std::array<std::uint8_t, 64> buffer_{};
    std::size_t buffered_ = 0;
    std::uint64_t total_ = 0;
};

}  // namespace vesper
