#include "console.h"

namespace vesper::console {
namespace {

// A value printed inside a line: one line, printable ASCII, at most 240 bytes.
std::string clean(std::string_view value) {
    std::string out;
    for (char c : value.substr(0, 240)) out += (c >= 0x20 && c < 0x7F) ? c : '?';
    return out;
}

std::string line(std::string_view rest) { return "vesper: " + std::string(rest); }

std::string refusal(int code) {
    switch (code) {
        case 1: return "unacceptable protocol version";
        case 2: return "identifier rejected";
        case 3: return "server unavailable";
        case 4: return "bad user name or password";
        case 5: return "not authorised";
        default: return "code " + std::to_string(code);
    }
}

}  // namespace

std::string boot(std::string_view sn, std::string_view hw_type, std::string_view hw_version, std::string_view fw,
                 std::string_view mac, std::string_view chip) {
    return line("boot sn=" + clean(sn) + " hw=" + clean(hw_type) + clean(hw_version) + " fw=" + clean(fw) +
                " mac=" + clean(mac) + " chip=" + clean(chip));
}
std::string wifi_connected(std::string_view ip) { return line("wifi connected ip=" + clean(ip)); }
std::string wifi_failed(std::string_view reason) { return line("wifi failed reason=" + clean(reason)); }
std::string mqtt_connected() { return line("mqtt connected"); }
std::string heartbeat_sent() { return line("heartbeat sent"); }
std::string error(std::string_view what) { return line("error what=" + clean(what)); }
std::string mqtt_refused(int connack_code) { return error("mqtt refused (" + refusal(connack_code) + ")"); }
std::string ota_update(std::string_view from, std::string_view to) {
    return line("ota update from=" + clean(from) + " to=" + clean(to));
}
std::string ota_done(std::string_view version) { return line("ota done fw=" + clean(version)); }
std::string ota_skipped(std::string_view offered, std::string_view reason) {
    return line("ota skipped offered=" + clean(offered) + " reason=" + clean(reason));
}
std::string reboot() { return line("reboot"); }
std::string ota_confirmed(std::string_view version) { return line("ota confirmed fw=" + clean(version)); }
std::string ota_rollback(std::string_view version, std::string_view reason) {
    return line("ota rollback fw=" + clean(version) + " reason=" + clean(reason));
}
std::string control_ignored(std::string_view reason) { return line("control ignored reason=" + clean(reason)); }
std::string restart(std::string_view reason) { return line("restart reason=" + clean(reason)); }

}  // namespace vesper::console
