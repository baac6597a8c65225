#include "doctest_compat.h"

#include "version.h"

using namespace vesper;

namespace {
int order(const char* a, const char* b) {
    auto x = Version::parse(a), y = Version::parse(b);
    REQUIRE(x);
    REQUIRE(y);
    return compare(*x, *y);
}
}  // namespace

TEST_CASE("versions: parsed as semver") {
    auto v = Version::parse("v1.20.3-rc.1+build.7");
    REQUIRE(v);
    CHECK(v->major == 1);
    CHECK(v->minor == 20);
    CHECK(v->patch == 3);
    CHECK(v->pre == std::vector<std::string>{"rc", "1"});
    for (const char* bad : {"", "1", "1.0", "1.0.0.0", "01.0.0", "1.0.x", "1.0.0-", "1.0.0-rc..1", "1.0.0-01",
                            "1.0.0+", "unknown", "1.0.0-r c", "-1.0.0", "99999999999999999999.0.0"}) {
        INFO("input: " << bad);
        CHECK_FALSE(Version::parse(bad));
    }
}

TEST_CASE("versions: precedence from semver.org section 11") {
    const char* ordered[] = {"1.0.0-alpha",      "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta",
                             "1.0.0-beta.2",     "1.0.0-beta.11", "1.0.0-rc.1",       "1.0.0",
                             "1.0.1",            "1.2.0",         "1.10.0",           "2.0.0"};
    const int n = sizeof ordered / sizeof *ordered;
    for (int i = 0; i < n; ++i) {
        for (int j = 0; j < n; ++j) {
            INFO(ordered[i] << " vs " << ordered[j]);
            const int got = order(ordered[i], ordered[j]);
            CHECK((got < 0) == (i < j));
            CHECK((got == 0) == (i == j));
        }
    }
    CHECK(order("1.0.0+a", "1.0.0+b") == 0);
    CHECK(order("v1.0.0", "1.0.0") == 0);
}
