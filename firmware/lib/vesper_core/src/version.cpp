#include "version.h"

namespace vesper {
namespace {

bool all_digits(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s) {
        if (c < '0' || c > '9') return false;
    }
    return true;
}

// A numeric identifier: digits, no leading zero (except "0"), fits in 64 bits.
std::optional<std::uint64_t> number(std::string_view s) {
    if (!all_digits(s) || (s.size() > 1 && s[0] == '0') || s.size() > 19) return std::nullopt;
    std::uint64_t v = 0;
    for (char c : s) v = v * 10 + static_cast<std::uint64_t>(c - '0');
    return v;
}

bool identifier(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s) {
        const bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-';
        if (!ok) return false;
    }
    return !all_digits(s) || s.size() == 1 || s[0] != '0';
}

std::vector<std::string_view> split(std::string_view s, char sep) {
    std::vector<std::string_view> parts;
    std::size_t start = 0;
    for (;;) {
        const auto at = s.find(sep, start);
        parts.push_back(s.substr(start, at == std::string_view::npos ? std::string_view::npos : at - start));
        if (at == std::string_view::npos) return parts;
        start = at + 1;
    }
}

}  // namespace

std::optional<Version> Version::parse(std::string_view text) {
    if (!text.empty() && text[0] == 'v') text.remove_prefix(1);
    if (text.size() > 64) return std::nullopt;
    if (const auto plus = text.find('+'); plus != std::string_view::npos) {
        for (auto id : split(text.substr(plus + 1), '.')) {
            if (id.empty()) return std::nullopt;
            for (char c : id) {
                if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-')) return std::nullopt;
            }
        }
        text = text.substr(0, plus);
    }
    Version v;
    if (const auto dash = text.find('-'); dash != std::string_view::npos) {
        for (auto id : split(text.substr(dash + 1), '.')) {
            if (!identifier(id)) return std::nullopt;
            v.pre.emplace_back(id);
        }
        text = text.substr(0, dash);
    }
    const auto core = split(text, '.');
    if (core.size() != 3) return std::nullopt;
    const auto major = number(core[0]), minor = number(core[1]), patch = number(core[2]);
    if (!major || !minor || !patch) return std::nullopt;
    v.major = *major;
    v.minor = *minor;
    v.patch = *patch;
    return v;
}

int compare(const Version& a, const Version& b) {
    if (a.major != b.major) return a.major < b.major ? -1 : 1;
    if (a.minor != b.minor) return a.minor < b.minor ? -1 : 1;
    if (a.patch != b.patch) return a.patch < b.patch ? -1 : 1;
    // A pre-release is lower than its release.
    if (a.pre.empty() != b.pre.empty()) return a.pre.empty() ? 1 : -1;
    for (std::size_t i = 0; i < a.pre.size() && i < b.pre.size(); ++i) {
        const auto& x = a.pre[i];
        const auto& y = b.pre[i];
        const bool xn = all_digits(x), yn = all_digits(y);
        if (xn && yn) {
            if (x.size() != y.size()) return x.size() < y.size() ? -1 : 1;
            if (x != y) return x < y ? -1 : 1;
        } else if (xn != yn) {
            return xn ? -1 : 1;  // numeric identifiers are lower than alphanumeric ones
        } else if (x != y) {
            return x < y ? -1 : 1;
        }
    }
    if (a.pre.size() != b.pre.size()) return a.pre.size() < b.pre.size() ? -1 : 1;
    return 0;
}

}  // namespace vesper
