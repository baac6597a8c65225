#include "doctest_compat.h"

#include <map>

#include "identity.h"

using namespace vesper;

namespace {
// A namespace as a map: what Preferences would return.
struct MapSource : KeyValueSource {
    std::map<std::string, std::string> strings;
    std::map<std::string, std::pair<NvsType, std::uint64_t>> numbers;  // unsigned ones
    std::map<std::string, NvsType> others;                             // e.g. a blob
    std::optional<NvsType> type_of(const char* key) const override {
        if (strings.count(key)) return NvsType::String;
        if (auto it = numbers.find(key); it != numbers.end()) return it->second.first;
        if (auto it = others.find(key); it != others.end()) return it->second;
        return std::nullopt;
    }
    std::optional<std::string> get_string(const char* key) const override {
        auto it = strings.find(key);
        return it == strings.end() ? std::nullopt : std::optional<std::string>(it->second);
    }
    std::optional<std::uint64_t> get_unsigned(const char* key) const override {
        auto it = numbers.find(key);
        return it == numbers.end() ? std::nullopt : std::optional<std::uint64_t>(it->second.second);
    }
};

MapSource good() {
    MapSource s;
    s.strings = {{"serial_number", "PV-26A18-BC02R-X7KQA"}, {"hw_type", "BC"}, {"hw_version", "02"},
                 {"mqtt_user", "PV-26A18-BC02R-X7KQA"}, {"mqtt_pass", "25fd3d9acfa670d8cb7a309e440d2ef1"},
                 {"mqtt_host", "mqtt.example.com"}, {"wifi_ssid", "bench"}, {"wifi_pass", "secret"}};
    s.numbers = {{"mqtt_port", {NvsType::U16, 1883}}};
    return s;
}

std::string only_problem(const MapSource& s) {
    const auto read = read_identity(s);
    CHECK_FALSE(read.identity);
    REQUIRE(read.problems.size() == 1);
    return read.problems[0].key + ": " + read.problems[0].reason;
}
}  // namespace

TEST_CASE("identity: every key of the vesper namespace") {
    auto s = good();
    const auto read = read_identity(s);
    REQUIRE(read.identity);
    CHECK(read.problems.empty());
    CHECK(read.identity->client_id() == "PV-26A18-BC02R-X7KQA");
    CHECK(read.identity->mqtt_port == 1883);
    CHECK(read.identity->wifi_ssid == "bench");
    CHECK(read.identity->wifi_pass == "secret");
    // The optional keys' defaults (DESIGN.md section 3).
    CHECK(read.identity->mqtt_ca.empty());
    CHECK(read.identity->ota_confirm_s == 300);
    CHECK(read.identity->offline_restart_s == 1800);
    CHECK(read.identity->heartbeat_s == 60);
    CHECK_FALSE(read.identity->factory_test);
}

TEST_CASE("identity: optional keys are read with their types") {
    auto s = good();
    s.strings["mqtt_ca"] = "-----BEGIN CERTIFICATE-----";
    s.numbers["ota_confirm_s"] = {NvsType::U32, 20};
    s.numbers["offline_reset_s"] = {NvsType::U32, 90};
    s.numbers["heartbeat_s"] = {NvsType::U32, 2};
    s.numbers["factory_test"] = {NvsType::U8, 1};
    const auto read = read_identity(s);
    REQUIRE(read.identity);
    CHECK(read.identity->mqtt_ca == "-----BEGIN CERTIFICATE-----");
    CHECK(read.identity->ota_confirm_s == 20);
    CHECK(read.identity->offline_restart_s == 90);
    CHECK(read.identity->heartbeat_s == 2);
    CHECK(read.identity->factory_test);
    s.numbers["heartbeat_s"] = {NvsType::U16, 2};
    CHECK(only_problem(s) == "heartbeat_s: is a u16, not a u32");
    s = good();
    s.numbers["heartbeat_s"] = {NvsType::U32, 0};
    CHECK(only_problem(s) == "heartbeat_s: is 0");
}

TEST_CASE("identity: a key of the wrong type is named with what it is") {
    auto s = good();
    s.strings.erase("wifi_pass");
    s.others["wifi_pass"] = NvsType::Blob;
    CHECK(only_problem(s) == "wifi_pass: is a blob, not a string");
    s = good();
    s.numbers["mqtt_port"] = {NvsType::U32, 8883};
    CHECK(only_problem(s) == "mqtt_port: is a u32, not a u16");
    s = good();
    s.strings.erase("serial_number");
    s.numbers["serial_number"] = {NvsType::U8, 1};
    CHECK(only_problem(s) == "serial_number: is a u8, not a string");
}

TEST_CASE("identity: each wrong key is named") {
    auto s = good();
    s.strings.erase("serial_number");
    CHECK(only_problem(s) == "serial_number: missing");
    s = good();
    s.strings["serial_number"] = s.strings["mqtt_user"] = "PV-26M18-BC02R-X7KQA";
    CHECK(only_problem(s) == "serial_number: not a serial number (month)");
    s = good();
    s.strings["hw_type"] = "BP";
    CHECK(only_problem(s) == "hw_type: `BP` differs from the serial number's BC");
    s = good();
    s.strings["hw_version"] = "01";
    CHECK(only_problem(s) == "hw_version: `01` differs from the serial number's 02");
    s = good();
    s.strings["mqtt_user"] = "PV-26A18-BC02R-X7KQB";
    CHECK(only_problem(s) == "mqtt_user: is not the serial number");
    s = good();
    s.strings["mqtt_pass"] = "25FD3D9ACFA670D8CB7A309E440D2EF1";
    CHECK(only_problem(s) == "mqtt_pass: is not 32 lower-case hex digits");
    s.strings["mqtt_pass"] = "25fd3d9a";
    CHECK(only_problem(s) == "mqtt_pass: is not 32 lower-case hex digits");
    s = good();
    s.strings["mqtt_host"] = "";
    CHECK(only_problem(s) == "mqtt_host: is not a host name or address");
    s.strings["mqtt_host"] = "a host";
    CHECK(only_problem(s) == "mqtt_host: is not a host name or address");
    s = good();
    s.numbers.clear();
    CHECK(only_problem(s) == "mqtt_port: missing (a u16)");
    s.numbers["mqtt_port"] = {NvsType::U16, 0};
    CHECK(only_problem(s) == "mqtt_port: is 0");
    s = good();
    s.strings["wifi_ssid"] = std::string(33, 's');
    CHECK(only_problem(s) == "wifi_ssid: is not 1 to 32 bytes");
    s.strings.erase("wifi_ssid");
    CHECK(only_problem(s) == "wifi_ssid: missing");
    s = good();
    s.strings.erase("wifi_pass");
    CHECK(only_problem(s) == "wifi_pass: missing");
}

TEST_CASE("identity: an empty namespace lists every missing key") {
    const auto read = read_identity(MapSource{});
    CHECK_FALSE(read.identity);
    CHECK(read.describe() ==
          "serial_number: missing; hw_type: missing; hw_version: missing; mqtt_user: missing; "
          "mqtt_pass: missing; mqtt_host: missing; mqtt_port: missing (a u16); wifi_ssid: missing; "
          "wifi_pass: missing");
}
