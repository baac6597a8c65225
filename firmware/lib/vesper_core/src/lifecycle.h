// The board's life between boots, without the I/O: an updated image proves itself (login and an
// acknowledged heartbeat) before it is kept, or gives way to the previous one at its deadline;
// and a board that has been offline too long restarts itself. Times are milliseconds on the
// 64-bit monotonic clock (esp_timer_get_time() / 1000), which does not wrap.
#pragma once

#include <cstdint>

namespace vesper {

class UpdateConfirmation {
  public:
    enum class Step { Wait, Confirm, RollBack };

    // `pending`: the running image is an update not yet confirmed (ESP_OTA_IMG_PENDING_VERIFY).
    UpdateConfirmation(bool pending, std::uint64_t boot_ms, std::uint32_t confirm_s);
    bool pending() const { return pending_; }
    // The broker acknowledged a heartbeat (so the image logged in and published).
    void on_heartbeat_acknowledged() { proven_ = true; }
    // Confirm once proven; roll back once the deadline passed without proof. Each is said once.
    Step poll(std::uint64_t now_ms);

  private:
    bool pending_;
    bool proven_ = false;
    std::uint64_t deadline_ms_;
};

class OfflineWatch {
  public:
    OfflineWatch(std::uint64_t boot_ms, std::uint32_t restart_s);
    // While connected the clock is held; it runs from the last moment the board was online.
    void online(std::uint64_t now_ms) { since_ms_ = now_ms; }
    bool restart_due(std::uint64_t now_ms) const { return now_ms - since_ms_ >= limit_ms_; }

  private:
    std::uint64_t since_ms_;
    std::uint64_t limit_ms_;
};

}  // namespace vesper
