// What a device sends and understands on MQTT (DESIGN.md section 3): its three topics from the
// templates, the retained status and last will, the heartbeat, and the control commands.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace vesper {

// Topic templates; `{sn}` stands for the serial number (configurable like the backend's ACL).
struct TopicTemplates {
    std::string data = "vesper/{sn}/data";
    std::string status = "vesper/{sn}/status";
    std::string control = "vesper/{sn}/control";
};

struct Topics {
    std::string data, status, control;
};

// `templ` with its `{sn}` replaced.
std::string topic_for(std::string_view templ, std::string_view sn);
Topics topics_for(const TopicTemplates& templates, std::string_view sn);

// What a heartbeat reports about the board besides its firmware and uptime.
struct Vitals {
    int rssi = 0;                     // dBm of the access point
    std::uint32_t heap_free = 0;      // bytes
    const char* reset_reason = "other";  // poweron, sw, panic, wdt, brownout or other
};

// {"type":"heartbeat","fw":"VERSION","uptime":SECONDS,"rssi":DBM,"heap_free":BYTES,"reset_reason":"..."}
std::string heartbeat_json(std::string_view fw, std::uint64_t uptime_s, const Vitals& vitals);
// Retained on the status topic after connecting: {"online":true,"fw":"VERSION"}
std::string status_online_json(std::string_view fw);
// The last will, retained on the status topic: {"online":false}
std::string status_offline_json();

enum class Command {
    Ota,        // {"cmd":"ota"}: check for an update now
    Reboot,     // {"cmd":"reboot"}
    Unknown,    // a JSON object with another or no `cmd`: ignored
    Malformed,  // not a JSON object, or too large: ignored with an error line
    Retained,   // a command the broker kept and replays: ignored with a console line
};

Command parse_command(std::string_view payload);

}  // namespace vesper
