#include "backoff.h"

namespace vesper {

Backoff::Backoff(std::uint32_t first_ms, std::uint32_t ceiling_ms)
    : first_(first_ms == 0 ? 1 : first_ms), ceiling_(ceiling_ms < first_ ? first_ : ceiling_ms) {}

std::uint32_t Backoff::next(std::uint32_t random) {
    std::uint64_t cap = first_;
    for (std::uint32_t i = 0; i < attempt_ && cap < ceiling_; ++i) cap *= 2;
    if (cap > ceiling_) cap = ceiling_;
    if (attempt_ < 64) ++attempt_;
    const std::uint64_t half = cap / 2;
    return static_cast<std::uint32_t>(cap - half + random % (half + 1));
}

}  // namespace vesper
