#include "doctest_compat.h"

#include "serial.h"
#include "vectors.h"

using namespace vesper;

TEST_CASE("serial numbers: the vectors shared with the Rust parser") {
    int count = 0;
    for (const auto& row : vectors::rows("device/serial_numbers.tsv")) {
        REQUIRE(row.size() == 2);
        const auto problems = serial_problems(row[0]);
        std::string got = problems.empty() ? "ok" : "";
        for (auto p : problems) got += (got.empty() ? "" : ",") + std::string(problem_name(p));
        INFO("input: " << row[0]);
        CHECK(got == row[1]);
        CHECK(is_serial_number(row[0]) == (row[1] == "ok"));
        ++count;
    }
    CHECK(count >= 30);
}

TEST_CASE("serial numbers: leap years and month lengths") {
    CHECK(is_serial_number("PV-28B29-BC02R-X7KQA"));
    CHECK_FALSE(is_serial_number("PV-27B29-BC02R-X7KQA"));
    CHECK(is_serial_number("PV-00B29-BC02R-X7KQA"));  // 2000 is a leap year
    CHECK_FALSE(is_serial_number("PV-26F31-BC02R-X7KQA"));  // June has 30 days
    CHECK(describe(serial_problems("PV-26M18-BC02R-X7KQ0")) == "month, suffix");
}
