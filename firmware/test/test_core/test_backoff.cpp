#include "doctest_compat.h"

#include <set>

#include "backoff.h"

using namespace vesper;

TEST_CASE("backoff: doubles up to the ceiling, each delay in the upper half") {
    Backoff b(1000, 60000);
    const std::uint32_t caps[] = {1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000};
    for (auto cap : caps) {
        const auto low = b.next(0);
        CHECK(low == cap - cap / 2);
    }
    Backoff high(1000, 60000);
    for (auto cap : caps) CHECK(high.next(UINT32_MAX) <= cap);
}

TEST_CASE("backoff: jitter spreads boards that fail together") {
    std::set<std::uint32_t> delays;
    std::uint32_t random = 12345;
    for (int board = 0; board < 50; ++board) {
        Backoff b(1000, 60000);
        for (int i = 0; i < 6; ++i) b.next(0);  // 1, 2, 4, 8, 16, 32 s: the next is capped at 60 s
        random = random * 1103515245u + 12345u;
        const auto d = b.next(random);
        CHECK(d >= 30000);
        CHECK(d <= 60000);
        delays.insert(d);
    }
    CHECK(delays.size() > 40);
}

TEST_CASE("backoff: a successful connection starts over") {
    Backoff b(500, 8000);
    for (int i = 0; i < 10; ++i) b.next(7);
    b.reset();
    CHECK(b.attempt() == 0);
    CHECK(b.next(0) == 250);
    Backoff odd(0, 0);  // nonsense settings still give a positive delay
    CHECK(odd.next(5) >= 1);
}
