// One MQTT session of a device, without the I/O: what to set as the last will, what to publish
// on connecting, when a heartbeat is due and what a control message asks for. The Arduino glue
// and the host runner both drive it, so the device's behaviour is the tested one.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "identity.h"
#include "messages.h"

namespace vesper {

constexpr std::uint16_t kKeepAliveSeconds = 60;
constexpr std::uint32_t kDefaultHeartbeatSeconds = 60;

struct Outgoing {
    std::string topic;
    std::string payload;
    bool retain = false;
};

class Session {
  public:
    Session(Identity identity, std::string firmware_version, const TopicTemplates& templates = {},
            std::uint32_t heartbeat_s = kDefaultHeartbeatSeconds);

    const Identity& identity() const { return identity_; }
    const Topics& topics() const { return topics_; }
    const std::string& firmware_version() const { return firmware_; }

    // Set on the connection before connecting: retained {"online":false} on the status topic.
    Outgoing will() const;
    // Right after the broker accepted the login: the retained online status. Subscribe to
    // topics().control too. The first heartbeat is due at once.
    Outgoing on_connected(std::uint64_t now_ms);
    // The connection is gone: no heartbeat until the next on_connected.
    void on_disconnected() { next_heartbeat_ms_.reset(); }
    // The heartbeat, when one is due at `now_ms` (milliseconds since boot); schedules the next.
    std::optional<Outgoing> heartbeat_due(std::uint64_t now_ms);
    // What a message on the control topic asks for (other topics: Unknown).
    Command on_message(const std::string& topic, const std::string& payload) const;

  private:
    Identity identity_;
    std::string firmware_;
    Topics topics_;
    std::uint64_t every_ms_;
    std::optional<std::uint64_t> next_heartbeat_ms_;
};

}  // namespace vesper
