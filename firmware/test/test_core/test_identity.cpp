#include "doctest_compat.h"

#include <map>

#include "identity.h"

using namespace vesper;

namespace {
// A namespace as a map: what Preferences would return.
struct MapSource : KeyValueSource {
    std::map<std::string, std::string> strings;
    std::map<std::string, std::uint16_t> u16s;
    std::optional<std::string> get_string(const char* key) const override {
        auto it = strings.find(key);
        return it == strings.end() ? std::nullopt : std::optional<std::string>(it->second);
    }
    std::optional<std::uint16_t> get_u16(const char* key) const override {
        auto it = u16s.find(key);
        return it == u16s.end() ? std::nullopt : std::optional<std::uint16_t>(it->second);
    }
};

MapSource good() {
    MapSource s;
    s.strings = {{"serial_number", "PV-26A18-BC02R-X7KQA"}, {"hw_type", "BC"}, {"hw_version", "02"},
                 {"mqtt_user", "PV-26A18-BC02R-X7KQA"}, {"mqtt_pass", "25fd3d9acfa670d8cb7a309e440d2ef1"},
                 {"mqtt_host", "mqtt.example.com"}};
    s.u16s = {{"mqtt_port", 1883}};
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
    s.strings["wifi_ssid"] = "bench";
    s.strings["wifi_pass"] = "secret";
    const auto read = read_identity(s);
    REQUIRE(read.identity);
    CHECK(read.problems.empty());
    CHECK(read.identity->client_id() == "PV-26A18-BC02R-X7KQA");
    CHECK(read.identity->mqtt_port == 1883);
    CHECK(read.identity->wifi_ssid == "bench");
    CHECK(read.identity->wifi_pass == "secret");
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
    s.u16s.clear();
    CHECK(only_problem(s) == "mqtt_port: missing (a u16)");
    s.u16s["mqtt_port"] = 0;
    CHECK(only_problem(s) == "mqtt_port: is 0");
    s = good();
    s.strings["wifi_ssid"] = std::string(33, 's');
    CHECK(only_problem(s) == "wifi_ssid: is longer than 32 bytes");
}

TEST_CASE("identity: an empty namespace lists every missing key") {
    const auto read = read_identity(MapSource{});
    CHECK_FALSE(read.identity);
    CHECK(read.describe() ==
          "serial_number: missing; hw_type: missing; hw_version: missing; mqtt_user: missing; "
          "mqtt_pass: missing; mqtt_host: missing; mqtt_port: missing (a u16)");
}
