#include "serial.h"

namespace vesper {
namespace {

constexpr std::size_t kLength = 20;
constexpr std::string_view kMonths = "ABCDEFGHIJKL";
constexpr std::string_view kSuffixAlphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

bool digit(char c) { return c >= '0' && c <= '9'; }
bool upper(char c) { return c >= 'A' && c <= 'Z'; }

// Two ASCII digits as a number, or -1.
int two_digits(std::string_view s) {
    if (s.size() != 2 || !digit(s[0]) || !digit(s[1])) return -1;
    return (s[0] - '0') * 10 + (s[1] - '0');
}

bool leap(int year) { return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0; }

int days_in_month(int year, int month) {
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return month == 2 && leap(year) ? 29 : days[month - 1];
}

void date_problems(std::string_view block, std::vector<SerialProblem>& found) {
    const int year = two_digits(block.substr(0, 2));
    if (year < 0) found.push_back(SerialProblem::Year);
    const auto letter = kMonths.find(block[2]);
    const int month = letter == std::string_view::npos ? -1 : static_cast<int>(letter) + 1;
    if (month < 0) found.push_back(SerialProblem::Month);
    const int day = two_digits(block.substr(3, 2));
    if (day < 0) {
        found.push_back(SerialProblem::DayFormat);
    } else if (year >= 0 && month > 0) {
        if (day < 1 || day > days_in_month(2000 + year, month)) found.push_back(SerialProblem::Day);
    } else if (day < 1 || day > 31) {
        found.push_back(SerialProblem::DayRange);
    }
}

}  // namespace

const char* problem_name(SerialProblem problem) {
    switch (problem) {
        case SerialProblem::Length: return "length";
        case SerialProblem::NonAscii: return "non_ascii";
        case SerialProblem::Prefix: return "prefix";
        case SerialProblem::Separator: return "separator";
        case SerialProblem::Year: return "year";
        case SerialProblem::Month: return "month";
        case SerialProblem::DayFormat: return "day_format";
        case SerialProblem::DayRange: return "day_range";
        case SerialProblem::Day: return "day";
        case SerialProblem::BoardType: return "board_type";
        case SerialProblem::Revision: return "revision";
        case SerialProblem::LiteralR: return "literal_r";
        case SerialProblem::Suffix: return "suffix";
    }
    return "unknown";
}

std::vector<SerialProblem> serial_problems(std::string_view s) {
    for (unsigned char c : s) {
        if (c >= 0x80) return {SerialProblem::NonAscii};
    }
    if (s.size() != kLength) return {SerialProblem::Length};
    std::vector<SerialProblem> found;
    if (s.substr(0, 3) != "PV-") found.push_back(SerialProblem::Prefix);
    if (s[8] != '-') found.push_back(SerialProblem::Separator);
    if (s[14] != '-') found.push_back(SerialProblem::Separator);
    date_problems(s.substr(3, 5), found);
    if (!upper(s[9]) || !upper(s[10])) found.push_back(SerialProblem::BoardType);
    if (two_digits(s.substr(11, 2)) < 0) found.push_back(SerialProblem::Revision);
    if (s[13] != 'R') found.push_back(SerialProblem::LiteralR);
    for (char c : s.substr(15)) {
        if (kSuffixAlphabet.find(c) == std::string_view::npos) {
            found.push_back(SerialProblem::Suffix);
            break;
        }
    }
    return found;
}

std::string describe(const std::vector<SerialProblem>& problems) {
    std::string out;
    for (auto p : problems) {
        if (!out.empty()) out += ", ";
        out += problem_name(p);
    }
    return out;
}

}  // namespace vesper
