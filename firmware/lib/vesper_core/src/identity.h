// Who the device is, read from namespace `vesper` of its NVS partition (DESIGN.md section 3):
// every key checked, so a board with a damaged or foreign partition says which key is wrong
// instead of knocking on the broker with a bad login.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace vesper {

constexpr const char* kNamespace = "vesper";

// Where the key/values come from: ESP-IDF's nvs_get_* on a device (Preferences), an NVS image
// reader on the host.
class KeyValueSource {
  public:
    virtual ~KeyValueSource() = default;
    virtual std::optional<std::string> get_string(const char* key) const = 0;
    virtual std::optional<std::uint16_t> get_u16(const char* key) const = 0;
};

struct Identity {
    std::string serial_number, hw_type, hw_version;
    std::string mqtt_user, mqtt_pass, mqtt_host;
    std::uint16_t mqtt_port = 0;
    // Per-board extra keys for the bench network; empty when not provisioned.
    std::string wifi_ssid, wifi_pass;

    // The MQTT client id a device logs in with: its serial number.
    const std::string& client_id() const { return serial_number; }
};

struct IdentityProblem {
    std::string key;
    std::string reason;
};

struct IdentityRead {
    std::optional<Identity> identity;
    std::vector<IdentityProblem> problems;  // every wrong key, in the order of DESIGN.md's list

    // "serial_number: ...; mqtt_port: ..." for the console's error line.
    std::string describe() const;
};

IdentityRead read_identity(const KeyValueSource& source);

}  // namespace vesper
