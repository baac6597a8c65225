#include "session.h"

namespace vesper {

Session::Session(Identity identity, std::string firmware_version, const TopicTemplates& templates,
                 std::uint32_t heartbeat_s)
    : identity_(std::move(identity)),
      firmware_(std::move(firmware_version)),
      topics_(topics_for(templates, identity_.serial_number)),
      every_ms_(static_cast<std::uint64_t>(heartbeat_s == 0 ? 1 : heartbeat_s) * 1000) {}

Outgoing Session::will() const { return {topics_.status, status_offline_json(), true}; }

Outgoing Session::on_connected(std::uint64_t now_ms) {
    next_heartbeat_ms_ = now_ms;
    return {topics_.status, status_online_json(firmware_), true};
}

std::optional<Outgoing> Session::heartbeat_due(std::uint64_t now_ms) {
    if (!next_heartbeat_ms_ || now_ms < *next_heartbeat_ms_) return std::nullopt;
    next_heartbeat_ms_ = now_ms + every_ms_;
    return Outgoing{topics_.data, heartbeat_json(firmware_, now_ms / 1000), false};
}

Command Session::on_message(const std::string& topic, const std::string& payload) const {
    return topic == topics_.control ? parse_command(payload) : Command::Unknown;
}

}  // namespace vesper
