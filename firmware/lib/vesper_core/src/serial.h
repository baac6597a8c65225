// Serial numbers `PV-YYMDD-BBTTR-XXXXX` (DESIGN.md section 3), checked on the device the way the
// backend checks them, so a board refuses an NVS partition that holds no serial number.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace vesper {

// One thing wrong with a would-be serial number, in the order the backend reports them.
enum class SerialProblem {
    Length,
    NonAscii,
    Prefix,
    Separator,
    Year,
    Month,
    DayFormat,
    DayRange,
    Day,
    BoardType,
    Revision,
    LiteralR,
    Suffix,
};

// The problem's name in tests/vectors/device/serial_numbers.tsv, e.g. "day_format".
const char* problem_name(SerialProblem problem);

// Every problem of `input`; empty when it is a valid serial number.
std::vector<SerialProblem> serial_problems(std::string_view input);

inline bool is_serial_number(std::string_view input) { return serial_problems(input).empty(); }

// The problems as "month, suffix" (empty when valid).
std::string describe(const std::vector<SerialProblem>& problems);

}  // namespace vesper
