// The little JSON a device reads and writes: flat objects of strings, numbers and booleans.
// Reading is bounded (size and nesting) because every byte comes from the network; nested
// values are skipped, not kept.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vesper {

// Most bytes of a JSON text the device reads (control commands, release descriptions).
constexpr std::size_t kMaxJsonBytes = 16 * 1024;

// A top-level member: strings unescaped, numbers and literals as written, nested values empty.
struct JsonMember {
    enum class Kind { String, Number, Bool, Null, Nested };
    std::string key;
    Kind kind;
    std::string text;
};

class JsonObject {
  public:
    // The top-level members of a JSON object; nullopt for anything else, for text beyond
    // kMaxJsonBytes or nested deeper than 16 levels.
    static std::optional<JsonObject> parse(std::string_view text);

    const JsonMember* find(std::string_view key) const;
    std::optional<std::string> string(std::string_view key) const;
    // A non-negative integer member (no sign, fraction or exponent) that fits in 64 bits.
    std::optional<std::uint64_t> unsigned_integer(std::string_view key) const;

  private:
    std::vector<JsonMember> members_;
};

// `text` as a JSON string literal, quotes included, escaped as serde_json escapes it.
std::string json_quote(std::string_view text);

}  // namespace vesper
