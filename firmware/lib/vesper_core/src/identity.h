// Who the device is, read from namespace `vesper` of its NVS partition (DESIGN.md section 3):
// every key checked by name and by type, so a board with a damaged or foreign partition says
// which key is wrong instead of knocking on the broker with a bad login.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace vesper {

constexpr const char* kNamespace = "vesper";

// The types an NVS entry can have (ESP-IDF's nvs_type_t; Arduino's PreferenceType).
enum class NvsType { U8, I8, U16, I16, U32, I32, U64, I64, String, Blob };
const char* nvs_type_name(NvsType type);

// Where the key/values come from: ESP-IDF's nvs_get_* on a device (Preferences), an NVS image
// reader on the host.
class KeyValueSource {
  public:
    virtual ~KeyValueSource() = default;
    // The type of `key`, or nullopt when the namespace has no such key.
    virtual std::optional<NvsType> type_of(const char* key) const = 0;
    // The text of a String key (nullopt for any other type).
    virtual std::optional<std::string> get_string(const char* key) const = 0;
    // The value of an unsigned key (U8, U16, U32, U64; nullopt for any other type).
    virtual std::optional<std::uint64_t> get_unsigned(const char* key) const = 0;
};

// Defaults of the optional keys (DESIGN.md section 3).
constexpr std::uint32_t kDefaultOtaConfirmSeconds = 300;
constexpr std::uint32_t kDefaultOfflineRestartSeconds = 1800;
constexpr std::uint32_t kDefaultHeartbeatSeconds = 60;

struct Identity {
    std::string serial_number, hw_type, hw_version;
    std::string mqtt_user, mqtt_pass, mqtt_host;
    std::uint16_t mqtt_port = 0;
    // The bench network the board joins.
    std::string wifi_ssid, wifi_pass;
    // Optional: the CA (PEM) that signs the broker's and the update server's certificates;
    // empty: the built-in certificate bundle.
    std::string mqtt_ca, ota_ca;
    std::uint32_t ota_confirm_s = kDefaultOtaConfirmSeconds;
    // NVS key `offline_reset_s`: DESIGN.md's `offline_restart_s` has 17 characters, and an NVS
    // key holds at most 15 (nvs_flash: NVS_KEY_NAME_MAX_SIZE 16 with the NUL).
    std::uint32_t offline_restart_s = kDefaultOfflineRestartSeconds;
    std::uint32_t heartbeat_s = kDefaultHeartbeatSeconds;
    bool factory_test = false;

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
