#include "identity.h"

#include "serial.h"

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

IdentityRead read_identity(const KeyValueSource& source) {
    IdentityRead read;
    Identity id;
    auto problem = [&](const char* key, std::string reason) { read.problems.push_back({key, std::move(reason)}); };
    auto text = [&](const char* key, std::string& into) {
        auto value = source.get_string(key);
        if (!value) {
            problem(key, "missing");
            return false;
        }
        into = std::move(*value);
        return true;
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
    if (const auto port = source.get_u16("mqtt_port")) {
        id.mqtt_port = *port;
        if (*port == 0) problem("mqtt_port", "is 0");
    } else {
        problem("mqtt_port", "missing (a u16)");
    }
    id.wifi_ssid = source.get_string("wifi_ssid").value_or("");
    id.wifi_pass = source.get_string("wifi_pass").value_or("");
    if (id.wifi_ssid.size() > 32) problem("wifi_ssid", "is longer than 32 bytes");
    if (id.wifi_pass.size() > 64) problem("wifi_pass", "is longer than 64 bytes");
    if (read.problems.empty()) read.identity = std::move(id);
    return read;
}

}  // namespace vesper
