// Reconnect delays: doubling from `first` up to `ceiling`, each drawn at random from its upper
// half, so a factory's boards that lost the broker together do not all return together.
#pragma once

#include <cstdint>

namespace vesper {

class Backoff {
  public:
    explicit Backoff(std::uint32_t first_ms = 1000, std::uint32_t ceiling_ms = 60000);
    // The next delay in milliseconds; `random` is any 32-bit random number (esp_random()).
    std::uint32_t next(std::uint32_t random);
    // After a successful connection: the next failure waits `first` again.
    void reset() { attempt_ = 0; }
    std::uint32_t attempt() const { return attempt_; }

  private:
    std::uint32_t first_, ceiling_, attempt_ = 0;
};

}  // namespace vesper
