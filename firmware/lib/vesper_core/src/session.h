// One MQTT session of a device, without the I/O: what to set as the last will, what to publish
// on connecting, when a heartbeat is due, which acknowledgement was a heartbeat's, and what a
// control message asks for. The firmware (src/main.cpp) drives it, on a board and on the host.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "identity.h"
#include "messages.h"

namespace vesper {

constexpr std::uint16_t kKeepAliveSeconds = 60;

struct Outgoing {
    std::string topic;
    std::string payload;
    bool retain = false;
    int qos = 1;
};

class Session {
  public:
    Session(Identity identity, std::string firmware_version, const TopicTemplates& templates = {});

    const Identity& identity() const { return identity_; }
    const Topics& topics() const { return topics_; }
    const std::string& firmware_version() const { return firmware_; }

    // Set on the connection before connecting: retained {"online":false} on the status topic.
    Outgoing will() const;
    // Right after the broker accepted the login: the retained online status. Subscribe to
    // topics().control too. The first heartbeat is due at once.
    Outgoing on_connected(std::uint64_t now_ms);
    // The connection is gone: no heartbeat until the next on_connected.
    void on_disconnected();
    // Whether a heartbeat is due at `now_ms` (so the board's vitals need reading).
    bool heartbeat_is_due(std::uint64_t now_ms) const { return next_heartbeat_ms_ && now_ms >= *next_heartbeat_ms_; }
    // The heartbeat, when one is due at `now_ms` (milliseconds since boot, 64-bit: never wraps);
    // schedules the next.
    std::optional<Outgoing> heartbeat_due(std::uint64_t now_ms, const Vitals& vitals);
    // The client queued the heartbeat as message `msg_id` (QoS 1).
    void heartbeat_queued(int msg_id) { heartbeat_msg_id_ = msg_id; }
    // The broker acknowledged message `msg_id`: true when it was the latest heartbeat.
    bool on_acknowledged(int msg_id);
    // What a message on the control topic asks for (other topics: Unknown). A retained message
    // is an old order replayed by the broker: never obeyed (Retained).
    Command on_message(const std::string& topic, const std::string& payload, bool retained) const;

  private:
    Identity identity_;
    std::string firmware_;
    Topics topics_;
    std::uint64_t every_ms_;
    std::optional<std::uint64_t> next_heartbeat_ms_;
    std::optional<int> heartbeat_msg_id_;
};

}  // namespace vesper
