// The factory mode of the end-of-line test (issue 27). With NVS `factory_test` = 1 the firmware
// reads the station's `vesper test PHASE` commands on its console and answers each with
// `vesper: phase PHASE begin`, one `vesper: meas NAME=VALUE [UNIT]` line per measurement its
// board's test takes, and `vesper: phase PHASE end`. tests/vectors/device/factory.tsv holds these
// lines, the station's reader and `vesper sim` to the same text.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vesper::factory {

// A phase or measurement name: 1 to 64 of A-Z a-z 0-9 _ - .
bool is_name(std::string_view text);

// The phase a console line asks for (`vesper test PHASE`, a trailing CR allowed), if it is one.
std::optional<std::string> command(std::string_view line);

std::string phase_begin(std::string_view phase);
std::string phase_end(std::string_view phase);
// A measured number (printed with up to 6 significant digits) or text; `unit` may be empty.
std::string measurement(std::string_view name, double value, std::string_view unit);
std::string measurement(std::string_view name, std::string_view text, std::string_view unit);

// Splits what the station sends into the phases of its complete command lines. A line longer
// than any command can be is dropped whole.
class CommandReader {
   public:
    std::vector<std::string> feed(std::string_view bytes);

   private:
    static constexpr std::size_t kMaxLine = 128;
    std::string line_;
    bool overlong_ = false;
};

}  // namespace vesper::factory
