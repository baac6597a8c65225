#include "doctest_compat.h"

#include <cstdlib>

#include "factory.h"
#include "vectors.h"

using namespace vesper;

TEST_CASE("factory mode: the lines and commands shared with the station and vesper sim") {
    int count = 0;
    for (const auto& r : vectors::rows("device/factory.tsv")) {
        INFO("row: " << r[0] << " " << r[1]);
        const auto& kind = r[0];
        if (kind == "phase_begin") {
            CHECK(factory::phase_begin(r[1]) == r.back());
        } else if (kind == "phase_end") {
            CHECK(factory::phase_end(r[1]) == r.back());
        } else if (kind == "meas") {
            char* end = nullptr;
            const double number = std::strtod(r[2].c_str(), &end);
            const bool is_number = !r[2].empty() && *end == '\0';
            CHECK((is_number ? factory::measurement(r[1], number, r[3]) : factory::measurement(r[1], r[2], r[3])) ==
                  r.back());
        } else if (kind == "command") {
            const auto phase = factory::command(r[1]);
            CHECK(phase.value_or("") == r[2]);
        } else {
            FAIL("unknown kind " << kind);
        }
        ++count;
    }
    CHECK(count >= 10);
}

TEST_CASE("factory mode: commands are whole, bounded lines") {
    factory::CommandReader reader;
    CHECK(reader.feed("vesper test po").empty());
    CHECK(reader.feed("wer\r\nnoise\nvesper test x y\n") == std::vector<std::string>{"power"});
    CHECK(reader.feed("vesper test " + std::string(200, 'a') + "\n").empty());
    CHECK(reader.feed("vesper test leds\n") == std::vector<std::string>{"leds"});
    CHECK(factory::measurement("v", 4.75, "") == "vesper: meas v=4.75");
    CHECK(factory::measurement("bad name", "x y", "m s") == "vesper: meas bad?name=x?y m?s");
}
