#include "session.h"

namespace vesper {

Session::Session(Identity identity, std::string firmware_version, const TopicTemplates& templates)
    : identity_(std::move(identity)),
      firmware_(std::move(firmware_version)),
      topics_(topics_for(templates, identity_.serial_number)),
      every_ms_(static_cast<std::uint64_t>(identity_.heartbeat_s == 0 ? 1 : identity_.heartbeat_s) * 1000) {}

Outgoing Session::will() const { return {topics_.status, status_offline_json(), true, 1}; }

Outgoing Session::on_connected(std::uint64_t now_ms) {
    next_heartbeat_ms_ = now_ms;
    return {topics_.status, status_online_json(firmware_), true, 1};
}

void Session::on_disconnected() {
    next_heartbeat_ms_.reset();
    heartbeat_msg_id_.reset();
}

std::optional<Outgoing> Session::heartbeat_due(std::uint64_t now_ms, const Vitals& vitals) {
    if (!heartbeat_is_due(now_ms)) return std::nullopt;
    next_heartbeat_ms_ = now_ms + every_ms_;
    return Outgoing{topics_.data, heartbeat_json(firmware_, now_ms / 1000, vitals), false, 1};
}

bool Session::on_acknowledged(int msg_id) {
    if (!heartbeat_msg_id_ || *heartbeat_msg_id_ != msg_id) return false;
    heartbeat_msg_id_.reset();
    return true;
}

Command Session::on_message(const std::string& topic, const std::string& payload, bool retained) const {
    if (topic != topics_.control) return Command::Unknown;
    const Command command = parse_command(payload);
    return retained && command != Command::Unknown ? Command::Retained : command;
}

}  // namespace vesper
