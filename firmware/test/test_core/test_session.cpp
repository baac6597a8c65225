#include "doctest_compat.h"

#include "session.h"

using namespace vesper;

namespace {
Identity identity() {
    Identity id;
    id.serial_number = id.mqtt_user = "PV-26A18-BC02R-X7KQA";
    id.hw_type = "BC";
    id.hw_version = "02";
    id.heartbeat_s = 60;
    return id;
}
}  // namespace

TEST_CASE("session: last will, online status, then heartbeats on schedule") {
    Session s(identity(), "1.0.1", TopicTemplates{});
    const Vitals v{-61, 176000, "poweron"};
    const auto will = s.will();
    CHECK(will.topic == "vesper/PV-26A18-BC02R-X7KQA/status");
    CHECK(will.payload == R"({"online":false})");
    CHECK(will.retain);
    CHECK_FALSE(s.heartbeat_due(5000, v));  // not connected yet

    const auto online = s.on_connected(5000);
    CHECK(online.topic == "vesper/PV-26A18-BC02R-X7KQA/status");
    CHECK(online.payload == R"({"online":true,"fw":"1.0.1"})");
    CHECK(online.retain);

    const auto first = s.heartbeat_due(5000, v);
    REQUIRE(first);
    CHECK(first->topic == "vesper/PV-26A18-BC02R-X7KQA/data");
    CHECK(first->payload == R"({"type":"heartbeat","fw":"1.0.1","uptime":5,"rssi":-61,"heap_free":176000,"reset_reason":"poweron"})");
    CHECK_FALSE(first->retain);
    CHECK_FALSE(s.heartbeat_is_due(64999));
    CHECK_FALSE(s.heartbeat_due(64999, v));
    CHECK(s.heartbeat_is_due(65000));
    const auto second = s.heartbeat_due(65000, v);
    REQUIRE(second);
    CHECK(second->payload == R"({"type":"heartbeat","fw":"1.0.1","uptime":65,"rssi":-61,"heap_free":176000,"reset_reason":"poweron"})");

    s.on_disconnected();
    CHECK_FALSE(s.heartbeat_due(200000, v));
    s.on_connected(210000);
    CHECK(s.heartbeat_due(210000, v));
}

TEST_CASE("session: only the own control topic commands the device") {
    Session s(identity(), "1.0.1");
    CHECK(s.on_message("vesper/PV-26A18-BC02R-X7KQA/control", R"({"cmd":"ota"})", false) == Command::Ota);
    CHECK(s.on_message("vesper/PV-26A18-BC02R-X7KQB/control", R"({"cmd":"ota"})", false) == Command::Unknown);
    CHECK(s.on_message("vesper/PV-26A18-BC02R-X7KQA/data", R"({"cmd":"reboot"})", false) == Command::Unknown);
    // A retained command is an old order the broker replays at every login: never obeyed.
    CHECK(s.on_message("vesper/PV-26A18-BC02R-X7KQA/control", R"({"cmd":"reboot"})", true) == Command::Retained);
    CHECK(s.on_message("vesper/PV-26A18-BC02R-X7KQA/control", R"({"hello":1})", true) == Command::Unknown);
}

TEST_CASE("session: topic templates from the build") {
    TopicTemplates t;
    t.data = "plant-7/{sn}/up";
    auto id = identity();
    id.heartbeat_s = 1;
    Session s(id, "1.0.1", t);
    s.on_connected(0);
    CHECK(s.heartbeat_due(0, {})->topic == "plant-7/PV-26A18-BC02R-X7KQA/up");
    CHECK(s.heartbeat_due(1000, {}));
}

TEST_CASE("session: time is 64-bit, so heartbeats go on across 2^32 ms (millis() wraps there)") {
    auto id = identity();
    id.heartbeat_s = 2;
    Session s(id, "1.0.1");
    const std::uint64_t wrap = 1ull << 32;
    s.on_connected(wrap - 1000);
    CHECK(s.heartbeat_due(wrap - 1000, {}));
    CHECK_FALSE(s.heartbeat_due(wrap, {}));
    const auto next = s.heartbeat_due(wrap + 1000, {});
    REQUIRE(next);
    CHECK(next->payload.find("\"uptime\":4294968") != std::string::npos);
    CHECK(s.heartbeat_due(wrap + 3000, {}));
}

TEST_CASE("session: only the latest heartbeat's acknowledgement counts") {
    Session s(identity(), "1.0.1");
    s.on_connected(0);
    s.heartbeat_queued(7);
    CHECK_FALSE(s.on_acknowledged(6));  // the online status
    CHECK(s.on_acknowledged(7));
    CHECK_FALSE(s.on_acknowledged(7));  // once
    s.heartbeat_queued(9);
    s.on_disconnected();
    CHECK_FALSE(s.on_acknowledged(9));  // the connection it was sent on is gone
}
