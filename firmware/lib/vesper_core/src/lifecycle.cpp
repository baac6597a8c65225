#include "lifecycle.h"

namespace vesper {

UpdateConfirmation::UpdateConfirmation(bool pending, std::uint64_t boot_ms, std::uint32_t confirm_s)
    : pending_(pending), deadline_ms_(boot_ms + static_cast<std::uint64_t>(confirm_s) * 1000) {}

UpdateConfirmation::Step UpdateConfirmation::poll(std::uint64_t now_ms) {
    if (!pending_) return Step::Wait;
    if (proven_) {
        pending_ = false;
        return Step::Confirm;
    }
    if (now_ms >= deadline_ms_) {
        pending_ = false;
        return Step::RollBack;
    }
    return Step::Wait;
}

OfflineWatch::OfflineWatch(std::uint64_t boot_ms, std::uint32_t restart_s)
    : since_ms_(boot_ms), limit_ms_(static_cast<std::uint64_t>(restart_s) * 1000) {}

}  // namespace vesper
