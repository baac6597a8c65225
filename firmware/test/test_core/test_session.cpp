#include "doctest_compat.h"

#include "session.h"

using namespace vesper;

namespace {
Identity identity() {
    Identity id;
    id.serial_number = id.mqtt_user = "PV-26A18-BC02R-X7KQA";
    id.hw_type = "BC";
    id.hw_version = "02";
    return id;
}
}  // namespace

TEST_CASE("session: last will, online status, then heartbeats on schedule") {
    Session s(identity(), "1.0.1", TopicTemplates{}, 60);
    const auto will = s.will();
    CHECK(will.topic == "vesper/PV-26A18-BC02R-X7KQA/status");
    CHECK(will.payload == R"({"online":false})");
    CHECK(will.retain);
    CHECK_FALSE(s.heartbeat_due(5000));  // not connected yet

    const auto online = s.on_connected(5000);
    CHECK(online.topic == "vesper/PV-26A18-BC02R-X7KQA/status");
    CHECK(online.payload == R"({"online":true,"fw":"1.0.1"})");
    CHECK(online.retain);

    const auto first = s.heartbeat_due(5000);
    REQUIRE(first);
    CHECK(first->topic == "vesper/PV-26A18-BC02R-X7KQA/data");
    CHECK(first->payload == R"({"type":"heartbeat","fw":"1.0.1","uptime":5})");
    CHECK_FALSE(first->retain);
    CHECK_FALSE(s.heartbeat_due(64999));
    const auto second = s.heartbeat_due(65000);
    REQUIRE(second);
    CHECK(second->payload == R"({"type":"heartbeat","fw":"1.0.1","uptime":65})");

    s.on_disconnected();
    CHECK_FALSE(s.heartbeat_due(200000));
    s.on_connected(210000);
    CHECK(s.heartbeat_due(210000));
}

TEST_CASE("session: only the own control topic commands the device") {
    Session s(identity(), "1.0.1");
    CHECK(s.on_message("vesper/PV-26A18-BC02R-X7KQA/control", R"({"cmd":"ota"})") == Command::Ota);
    CHECK(s.on_message("vesper/PV-26A18-BC02R-X7KQB/control", R"({"cmd":"ota"})") == Command::Unknown);
    CHECK(s.on_message("vesper/PV-26A18-BC02R-X7KQA/data", R"({"cmd":"reboot"})") == Command::Unknown);
}

TEST_CASE("session: topic templates from the build") {
    TopicTemplates t;
    t.data = "plant-7/{sn}/up";
    Session s(identity(), "1.0.1", t, 1);
    s.on_connected(0);
    CHECK(s.heartbeat_due(0)->topic == "plant-7/PV-26A18-BC02R-X7KQA/up");
    CHECK(s.heartbeat_due(1000));
}
