#include "factory.h"

#include <cstdio>

namespace vesper::factory {
namespace {

// A value inside a line: printable ASCII without spaces, at most 64 bytes.
std::string clean(std::string_view value) {
    std::string out;
    for (char c : value.substr(0, 64)) out += (c > 0x20 && c < 0x7F) ? c : '?';
    return out;
}

std::string with_unit(std::string line, std::string_view unit) {
    if (!unit.empty()) line += " " + clean(unit);
    return line;
}

}  // namespace

bool is_name(std::string_view text) {
    if (text.empty() || text.size() > 64) return false;
    for (char c : text) {
        const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
                        c == '-' || c == '.';
        if (!ok) return false;
    }
    return true;
}

std::optional<std::string> command(std::string_view line) {
    while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.remove_suffix(1);
    constexpr std::string_view prefix = "vesper test ";
    if (line.substr(0, prefix.size()) != prefix) return std::nullopt;
    const auto phase = line.substr(prefix.size());
    if (!is_name(phase)) return std::nullopt;
    return std::string(phase);
}

std::string phase_begin(std::string_view phase) { return "vesper: phase " + clean(phase) + " begin"; }
std::string phase_end(std::string_view phase) { return "vesper: phase " + clean(phase) + " end"; }

std::string measurement(std::string_view name, double value, std::string_view unit) {
    char number[32];
    std::snprintf(number, sizeof number, "%.6g", value);
    return measurement(name, std::string_view(number), unit);
}

std::string measurement(std::string_view name, std::string_view text, std::string_view unit) {
    return with_unit("vesper: meas " + clean(name) + "=" + clean(text), unit);
}

std::vector<std::string> CommandReader::feed(std::string_view bytes) {
    std::vector<std::string> phases;
    for (char c : bytes) {
        if (c == '\n') {
            if (!overlong_) {
                if (auto phase = command(line_)) phases.push_back(*phase);
            }
            line_.clear();
            overlong_ = false;
        } else if (line_.size() < kMaxLine) {
            line_ += c;
        } else {
            overlong_ = true;
        }
    }
    return phases;
}

}  // namespace vesper::factory
