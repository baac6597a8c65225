#include "json.h"

namespace vesper {
namespace {

constexpr int kMaxDepth = 16;

class Reader {
  public:
    explicit Reader(std::string_view text) : s_(text) {}

    void space() {
        while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
    }
    bool eat(char c) {
        space();
        if (i_ < s_.size() && s_[i_] == c) {
            ++i_;
            return true;
        }
        return false;
    }
    bool done() {
        space();
        return i_ == s_.size();
    }
    char peek() {
        space();
        return i_ < s_.size() ? s_[i_] : '\0';
    }

    bool string(std::string& out) {
        if (!eat('"')) return false;
        while (i_ < s_.size()) {
            const char c = s_[i_++];
            if (c == '"') return true;
            if (static_cast<unsigned char>(c) < 0x20) return false;
            if (c != '\\') {
                out += c;
                continue;
            }
            if (i_ >= s_.size()) return false;
            const char e = s_[i_++];
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    unsigned code = 0;
                    if (!hex4(code)) return false;
                    if (code >= 0xD800 && code <= 0xDBFF) {
                        unsigned low = 0;
                        if (i_ + 1 >= s_.size() || s_[i_] != '\\' || s_[i_ + 1] != 'u') return false;
                        i_ += 2;
                        if (!hex4(low) || low < 0xDC00 || low > 0xDFFF) return false;
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                    } else if (code >= 0xDC00 && code <= 0xDFFF) {
                        return false;
                    }
                    utf8(code, out);
                    break;
                }
                default: return false;
            }
        }
        return false;
    }

    bool number(std::string& out) {
        space();
        const std::size_t start = i_;
        if (i_ < s_.size() && s_[i_] == '-') ++i_;
        if (!digits()) return false;
        if (i_ < s_.size() && s_[i_] == '.') {
            ++i_;
            if (!digits()) return false;
        }
        if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
            ++i_;
            if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
            if (!digits()) return false;
        }
        out.assign(s_.substr(start, i_ - start));
        return true;
    }

    bool literal(std::string_view word) {
        space();
        if (s_.substr(i_, word.size()) != word) return false;
        i_ += word.size();
        return true;
    }

    // Any value, read and dropped.
    bool skip(int depth) {
        if (depth > kMaxDepth) return false;
        std::string ignored;
        switch (peek()) {
            case '"': return string(ignored);
            case '{': {
                eat('{');
                if (eat('}')) return true;
                do {
                    ignored.clear();
                    if (!string(ignored) || !eat(':') || !skip(depth + 1)) return false;
                } while (eat(','));
                return eat('}');
            }
            case '[': {
                eat('[');
                if (eat(']')) return true;
                do {
                    if (!skip(depth + 1)) return false;
                } while (eat(','));
                return eat(']');
            }
            case 't': return literal("true");
            case 'f': return literal("false");
            case 'n': return literal("null");
            default: return number(ignored);
        }
    }

  private:
    bool digits() {
        const std::size_t start = i_;
        while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
        return i_ > start;
    }
    bool hex4(unsigned& code) {
        if (i_ + 4 > s_.size()) return false;
        for (int k = 0; k < 4; ++k) {
            const char h = s_[i_++];
            code <<= 4;
            if (h >= '0' && h <= '9') code |= h - '0';
            else if (h >= 'a' && h <= 'f') code |= h - 'a' + 10;
            else if (h >= 'A' && h <= 'F') code |= h - 'A' + 10;
            else return false;
        }
        return true;
    }
    static void utf8(unsigned code, std::string& out) {
        if (code < 0x80) {
            out += static_cast<char>(code);
        } else if (code < 0x800) {
            out += static_cast<char>(0xC0 | (code >> 6));
            out += static_cast<char>(0x80 | (code & 0x3F));
        } else if (code < 0x10000) {
            out += static_cast<char>(0xE0 | (code >> 12));
            out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (code & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (code >> 18));
            out += static_cast<char>(0x80 | ((code >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (code & 0x3F));
        }
    }

    std::string_view s_;
    std::size_t i_ = 0;
};

}  // namespace

std::optional<JsonObject> JsonObject::parse(std::string_view text) {
    if (text.size() > kMaxJsonBytes) return std::nullopt;
    Reader r(text);
    JsonObject object;
    if (!r.eat('{')) return std::nullopt;
    if (!r.eat('}')) {
        do {
            JsonMember m;
            if (!r.string(m.key) || !r.eat(':')) return std::nullopt;
            switch (r.peek()) {
                case '"':
                    m.kind = JsonMember::Kind::String;
                    if (!r.string(m.text)) return std::nullopt;
                    break;
                case '{':
                case '[':
                    m.kind = JsonMember::Kind::Nested;
                    if (!r.skip(1)) return std::nullopt;
                    break;
                case 't':
                case 'f':
                    m.kind = JsonMember::Kind::Bool;
                    m.text = r.peek() == 't' ? "true" : "false";
                    if (!r.literal(m.text)) return std::nullopt;
                    break;
                case 'n':
                    m.kind = JsonMember::Kind::Null;
                    if (!r.literal("null")) return std::nullopt;
                    break;
                default:
                    m.kind = JsonMember::Kind::Number;
                    if (!r.number(m.text)) return std::nullopt;
            }
            object.members_.push_back(std::move(m));
        } while (r.eat(','));
        if (!r.eat('}')) return std::nullopt;
    }
    if (!r.done()) return std::nullopt;
    return object;
}

const JsonMember* JsonObject::find(std::string_view key) const {
    // The last one wins, as in most readers; duplicates are not an error.
    const JsonMember* found = nullptr;
    for (const auto& m : members_) {
        if (m.key == key) found = &m;
    }
    return found;
}

std::optional<std::string> JsonObject::string(std::string_view key) const {
    const auto* m = find(key);
    if (m == nullptr || m->kind != JsonMember::Kind::String) return std::nullopt;
    return m->text;
}

std::optional<std::uint64_t> JsonObject::unsigned_integer(std::string_view key) const {
    const auto* m = find(key);
    if (m == nullptr || m->kind != JsonMember::Kind::Number || m->text.empty()) return std::nullopt;
    std::uint64_t value = 0;
    for (char c : m->text) {
        if (c < '0' || c > '9') return std::nullopt;
        const std::uint64_t digit = static_cast<std::uint64_t>(c - '0');
        if (value > (UINT64_MAX - digit) / 10) return std::nullopt;
        value = value * 10 + digit;
    }
    return value;
}

std::string json_quote(std::string_view text) {
    static const char* hex = "0123456789abcdef";
    std::string out = "\"";
    for (char c : text) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c == '\t') {
            out += "\\t";
        } else if (c == '\b') {
            out += "\\b";
        } else if (c == '\f') {
            out += "\\f";
        } else if (u < 0x20) {
            out += "\\u00";
            out += hex[u >> 4];
            out += hex[u & 0xF];
        } else {
            out += c;
        }
    }
    out += '"';
    return out;
}

}  // namespace vesper
