#include "identity.h"

#include "serial.h"

#include <type_traits>

namespace vesper {
namespace {

bool lower_hex(const std::string& s) {
    for (char c : s) {
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return true;
}

bool host_name(const std::string& s) {
    if (s.empty() || s.size() > 253) return false;
    for (char c : s) {
        const bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
                        c == '.' || c == ':' || c == '_';
        if (!ok) return false;
    }
    return true;
}

}  // namespace

std::string IdentityRead::describe() const {
    std::string out;
    for (const auto& p : problems) {
        if (!out.empty()) out += "; ";
        out += p.key + ": " + p.reason;
    }
    return out;
}

const char* nvs_type_name(NvsType type) {
    switch (type) {
        case NvsType::U8: return "u8";
        case NvsType::I8: return "i8";
        case NvsType::U16: return "u16";
        case NvsType::I16: return "i16";
        case NvsType::U32: return "u32";
        case NvsType::I32: return "i32";
        case NvsType::U64: return "u64";
        case NvsType::I64: return "i64";
        case NvsType::String: return "string";
        case NvsType::Blob: return "blob";
    }
    return "unknown";
}

IdentityRead read_identity(const KeyValueSource& source) {
    IdentityRead read;
    Identity id;
    auto problem = [&](const char* key, std::string reason) { read.problems.push_back({key, std::move(reason)}); };
    // A key of the wrong type is named with what it is, never read as absent.
    auto wrong_type = [&](const char* key, NvsType expected) {
        const auto type = source.type_of(key);
        if (!type || *type == expected) return false;
        problem(key, std::string("is a ") + nvs_type_name(*type) + ", not a " + nvs_type_name(expected));
        return true;
    };
    auto text = [&](const char* key, std::string& into) {
        if (wrong_type(key, NvsType::String)) return false;
        auto value = source.get_string(key);
        if (!value) {
            problem(key, "missing");
            return false;
        }
        into = std::move(*value);
        return true;
    };
    auto optional_text = [&](const char* key, std::string& into, std::size_t max) {
        if (wrong_type(key, NvsType::String)) return;
        into = source.get_string(key).value_or("");
        if (into.size() > max) problem(key, "is longer than " + std::to_string(max) + " bytes");
    };
    auto optional_number = [&](const char* key, NvsType type, auto& into) {
        if (wrong_type(key, type)) return;
        if (const auto value = source.get_unsigned(key)) into = static_cast<std::remove_reference_t<decltype(into)>>(*value);
    };

    if (text("serial_number", id.serial_number)) {
        const auto problems = serial_problems(id.serial_number);
        if (!problems.empty()) problem("serial_number", "not a serial number (" + describe(problems) + ")");
    }
    const bool sn_ok = read.problems.empty();
    if (text("hw_type", id.hw_type) && sn_ok && id.hw_type != id.serial_number.substr(9, 2)) {
        problem("hw_type", "`" + id.hw_type + "` differs from the serial number's " + id.serial_number.substr(9, 2));
    }
    if (text("hw_version", id.hw_version) && sn_ok && id.hw_version != id.serial_number.substr(11, 2)) {
        problem("hw_version",
                "`" + id.hw_version + "` differs from the serial number's " + id.serial_number.substr(11, 2));
    }
    if (text("mqtt_user", id.mqtt_user) && sn_ok && id.mqtt_user != id.serial_number) {
        problem("mqtt_user", "is not the serial number");
    }
    if (text("mqtt_pass", id.mqtt_pass) && (id.mqtt_pass.size() != 32 || !lower_hex(id.mqtt_pass))) {
        problem("mqtt_pass", "is not 32 lower-case hex digits");
    }
    if (text("mqtt_host", id.mqtt_host) && !host_name(id.mqtt_host)) {
        problem("mqtt_host", "is not a host name or address");
    }
    if (!wrong_type("mqtt_port", NvsType::U16)) {
        if (const auto port = source.get_unsigned("mqtt_port")) {
            id.mqtt_port = static_cast<std::uint16_t>(*port);
            if (*port == 0) problem("mqtt_port", "is 0");
        } else {
            problem("mqtt_port", "missing (a u16)");
        }
    }
    if (text("wifi_ssid", id.wifi_ssid) && (id.wifi_ssid.empty() || id.wifi_ssid.size() > 32)) {
        problem("wifi_ssid", "is not 1 to 32 bytes");
    }
    if (text("wifi_pass", id.wifi_pass) && id.wifi_pass.size() > 64) {
        problem("wifi_pass", "is longer than 64 bytes");
    }
    optional_text("mqtt_ca", id.mqtt_ca, 3968);
    optional_text("ota_ca", id.ota_ca, 3968);
    optional_number("ota_confirm_s", NvsType::U32, id.ota_confirm_s);
    optional_number("offline_reset_s", NvsType::U32, id.offline_restart_s);
    optional_number("heartbeat_s", NvsType::U32, id.heartbeat_s);
    std::uint8_t factory = 0;
    optional_number("factory_test", NvsType::U8, factory);
    id.factory_test = factory == 1;
    if (id.heartbeat_s == 0) problem("heartbeat_s", "is 0");
    if (id.ota_confirm_s == 0) problem("ota_confirm_s", "is 0");
    if (id.offline_restart_s == 0) problem("offline_reset_s", "is 0");
    if (read.problems.empty()) read.identity = std::move(id);
    return read;
}

}  // namespace vesper
