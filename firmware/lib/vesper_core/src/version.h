// Semantic versions (semver.org 2.0.0), so a device updates only to a higher release.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vesper {

struct Version {
    std::uint64_t major = 0, minor = 0, patch = 0;
    // Pre-release identifiers ("rc", "1" of 1.0.0-rc.1); build metadata is dropped.
    std::vector<std::string> pre;

    // MAJOR.MINOR.PATCH[-PRE][+BUILD], an optional leading `v`; nullopt when not a version.
    static std::optional<Version> parse(std::string_view text);
};

// <0, 0 or >0 as `a` is lower than, equal to or higher than `b` by semver precedence.
int compare(const Version& a, const Version& b);

}  // namespace vesper
