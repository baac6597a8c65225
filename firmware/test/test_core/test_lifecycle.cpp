#include "doctest_compat.h"

#include "lifecycle.h"

using namespace vesper;

TEST_CASE("lifecycle: an update is confirmed once its heartbeat is acknowledged") {
    UpdateConfirmation c(true, 1000, 300);
    CHECK(c.pending());
    CHECK(c.poll(1000) == UpdateConfirmation::Step::Wait);
    CHECK(c.poll(300999) == UpdateConfirmation::Step::Wait);
    c.on_heartbeat_acknowledged();
    CHECK(c.poll(301500) == UpdateConfirmation::Step::Confirm);  // proof wins, even past the deadline
    CHECK_FALSE(c.pending());
    CHECK(c.poll(400000) == UpdateConfirmation::Step::Wait);     // said once
}

TEST_CASE("lifecycle: an update without proof rolls back at its deadline, exactly then") {
    UpdateConfirmation c(true, 5000, 8);
    CHECK(c.poll(12999) == UpdateConfirmation::Step::Wait);
    CHECK(c.poll(13000) == UpdateConfirmation::Step::RollBack);
    CHECK(c.poll(13001) == UpdateConfirmation::Step::Wait);
}

TEST_CASE("lifecycle: an image that is not an update never confirms or rolls back") {
    UpdateConfirmation c(false, 0, 1);
    c.on_heartbeat_acknowledged();
    CHECK(c.poll(0) == UpdateConfirmation::Step::Wait);
    CHECK(c.poll(1ull << 40) == UpdateConfirmation::Step::Wait);
}

TEST_CASE("lifecycle: the offline restart counts from the last moment online, on 64 bits") {
    const std::uint64_t wrap = 1ull << 32;
    OfflineWatch w(wrap - 1000, 1800);
    CHECK_FALSE(w.restart_due(wrap - 1000 + 1799999));
    CHECK(w.restart_due(wrap - 1000 + 1800000));  // across the 32-bit wrap of millis()
    w.online(wrap + 5000000);
    CHECK_FALSE(w.restart_due(wrap + 5000000 + 1799999));
    CHECK(w.restart_due(wrap + 5000000 + 1800000));
}
