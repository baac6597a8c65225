#include "doctest_compat.h"

#include "console.h"
#include "messages.h"
#include "vectors.h"

using namespace vesper;

namespace {
// The text the core makes for one row of tests/vectors/device/messages.tsv.
std::string render(const std::vector<std::string>& r) {
    const auto& kind = r[0];
    if (kind == "boot") return console::boot(r[1], r[2], r[3], r[4], r[5], r[6]);
    if (kind == "wifi_connected") return console::wifi_connected(r[1]);
    if (kind == "wifi_failed") return console::wifi_failed(r[1]);
    if (kind == "mqtt_connected") return console::mqtt_connected();
    if (kind == "heartbeat_sent") return console::heartbeat_sent();
    if (kind == "error") return console::error(r[1]);
    if (kind == "mqtt_refused") return console::mqtt_refused(std::stoi(r[1]));
    if (kind == "ota_update") return console::ota_update(r[1], r[2]);
    if (kind == "ota_done") return console::ota_done(r[1]);
    if (kind == "ota_skipped") return console::ota_skipped(r[1], r[2]);
    if (kind == "reboot") return console::reboot();
    if (kind == "ota_confirmed") return console::ota_confirmed(r[1]);
    if (kind == "ota_rollback") return console::ota_rollback(r[1], r[2]);
    if (kind == "control_ignored") return console::control_ignored(r[1]);
    if (kind == "restart") return console::restart(r[1]);
    if (kind == "heartbeat_json") {
        static std::string reason;
        reason = r[5];
        return heartbeat_json(r[1], std::stoull(r[2]), Vitals{std::stoi(r[3]), static_cast<std::uint32_t>(std::stoul(r[4])), reason.c_str()});
    }
    if (kind == "status_online_json") return status_online_json(r[1]);
    if (kind == "status_offline_json") return status_offline_json();
    FAIL("unknown message kind " << kind);
    return "";
}
}  // namespace

TEST_CASE("console lines and payloads: the vectors shared with vesper sim") {
    int count = 0;
    for (const auto& row : vectors::rows("device/messages.tsv")) {
        INFO("row: " << row[0]);
        CHECK(render(row) == row.back());
        ++count;
    }
    CHECK(count >= 20);
}

TEST_CASE("console lines stay one printable line") {
    CHECK(console::error("bad\r\nline\x01") == "vesper: error what=bad??line?");
    CHECK(console::error(std::string(500, 'x')).size() == std::string("vesper: error what=").size() + 240);
}

TEST_CASE("payloads escape what they quote") {
    CHECK(heartbeat_json("1.0\"x", 1, {}) == R"({"type":"heartbeat","fw":"1.0\"x","uptime":1,"rssi":0,"heap_free":0,"reset_reason":"other"})");
}

TEST_CASE("topics from templates") {
    const auto t = topics_for(TopicTemplates{}, "PV-26A18-BC02R-X7KQA");
    CHECK(t.data == "vesper/PV-26A18-BC02R-X7KQA/data");
    CHECK(t.status == "vesper/PV-26A18-BC02R-X7KQA/status");
    CHECK(t.control == "vesper/PV-26A18-BC02R-X7KQA/control");
    CHECK(topic_for("factory/{sn}/up", "SN") == "factory/SN/up");
}

TEST_CASE("control commands") {
    CHECK(parse_command(R"({"cmd":"ota"})") == Command::Ota);
    CHECK(parse_command(R"( {"cmd" : "reboot", "why":"test"} )") == Command::Reboot);
    CHECK(parse_command(R"({"cmd":"format"})") == Command::Unknown);
    CHECK(parse_command(R"({"relay":1})") == Command::Unknown);
    CHECK(parse_command(R"({"cmd":1})") == Command::Unknown);
    CHECK(parse_command("ota") == Command::Malformed);
    CHECK(parse_command("") == Command::Malformed);
    CHECK(parse_command(std::string(20000, '{')) == Command::Malformed);
}
