// The lines a device prints on its serial console, one per step (DESIGN.md section 3). The
// station shows them in the slot and reads them to tell where a board stopped, and `vesper sim`
// prints the same ones (tests/vectors/device/messages.tsv holds both sides to that).
#pragma once

#include <string>
#include <string_view>

namespace vesper::console {

// `mac` as AA:BB:CC:DD:EE:FF, `chip` as esptool names it (esp32, esp32s3, ...).
std::string boot(std::string_view sn, std::string_view hw_type, std::string_view hw_version, std::string_view fw,
                 std::string_view mac, std::string_view chip);
std::string wifi_connected(std::string_view ip);
std::string wifi_failed(std::string_view reason);
std::string mqtt_connected();
std::string heartbeat_sent();
std::string error(std::string_view what);
// The broker refused the login: the CONNACK return code of MQTT 3.1.1 (section 3.2.2.3) in words.
std::string mqtt_refused(int connack_code);
// OTA steps: a higher release found, and installed (the device reboots into it next).
std::string ota_update(std::string_view from, std::string_view to);
std::string ota_done(std::string_view version);
// The offered release is not taken (`reason`: up-to-date, older, bad-version).
std::string ota_skipped(std::string_view offered, std::string_view reason);
// A reboot asked for by {"cmd":"reboot"} or after an update.
std::string reboot();
// The updated image logged in and had a heartbeat acknowledged: it is kept.
std::string ota_confirmed(std::string_view version);
// The updated image could not prove itself (`reason`: e.g. no-mqtt): back to the previous one.
std::string ota_rollback(std::string_view version, std::string_view reason);
// A control message not obeyed (`reason`: retained).
std::string control_ignored(std::string_view reason);
// The device restarts itself (`reason`: offline).
std::string restart(std::string_view reason);

}  // namespace vesper::console
