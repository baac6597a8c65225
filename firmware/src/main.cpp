// Vesper firmware: the Arduino glue around lib/vesper_core. Everything that decides is in the
// core (host-tested); this file only reads NVS, joins Wi-Fi, moves MQTT and HTTP bytes and
// prints the console lines the core makes. Not built in CI (see README.md).
#include <Arduino.h>
#include <HTTPClient.h>
#include <Preferences.h>
#include <PubSubClient.h>
#include <Update.h>
#include <WiFi.h>
#include <esp_random.h>

#include <memory>

#include "vesper_core.h"

using namespace vesper;

namespace {

// ESP-IDF's nvs_get_* through Arduino's Preferences, namespace `vesper`, read-only.
class PreferencesSource : public KeyValueSource {
  public:
    explicit PreferencesSource(Preferences& prefs) : prefs_(prefs) {}
    std::optional<std::string> get_string(const char* key) const override {
        if (!prefs_.isKey(key) || prefs_.getType(key) != PT_STR) return std::nullopt;
        return std::string(prefs_.getString(key).c_str());
    }
    std::optional<std::uint16_t> get_u16(const char* key) const override {
        if (!prefs_.isKey(key) || prefs_.getType(key) != PT_U16) return std::nullopt;
        return prefs_.getUShort(key);
    }

  private:
    Preferences& prefs_;
};

Preferences prefs;
WiFiClient net;
PubSubClient mqtt(net);
std::unique_ptr<Session> session;
Backoff backoff;
unsigned long next_attempt = 0;
bool was_connected = false;
volatile bool ota_asked = false, reboot_asked = false;

void say(const std::string& line) { Serial.println(line.c_str()); }

void on_message(char* topic, byte* payload, unsigned int len) {
    switch (session->on_message(topic, std::string(reinterpret_cast<char*>(payload), len))) {
        case Command::Ota: ota_asked = true; break;
        case Command::Reboot: reboot_asked = true; break;
        case Command::Malformed: say(console::error("control message is not a command")); break;
        case Command::Unknown: break;
    }
}

// Fetches latest.json, and streams a higher release into the spare OTA partition; the boot
// partition switches only when the whole image has the announced SHA-256.
void check_for_update() {
    const std::string latest = std::string(VESPER_OTA_BASE) + "/ota/" VESPER_BOARD "/latest.json";
    HTTPClient http;
    http.begin(latest.c_str());
    const int status = http.GET();
    const auto parsed = status == 200 ? parse_release(http.getString().c_str()) : ReleaseParse{std::nullopt, "http " + std::to_string(status)};
    http.end();
    if (!parsed.release) return say(console::error("ota release " + parsed.error));
    const Release& release = *parsed.release;
    const auto decision = decide(session->firmware_version(), release);
    if (decision != OtaDecision::Update) return say(console::ota_skipped(release.version, decision_name(decision)));
    say(console::ota_update(session->firmware_version(), release.version));
    http.begin(resolve_url(latest, release.url).c_str());
    if (http.GET() != 200 || !Update.begin(release.size)) {
        http.end();
        return say(console::error("ota cannot fetch the image"));
    }
    OtaVerifier verifier(release);
    WiFiClient* stream = http.getStreamPtr();
    uint8_t buffer[1024];
    const unsigned long started = millis();
    while (http.connected() && verifier.received() < release.size && millis() - started < 120000) {
        const size_t n = stream->readBytes(buffer, sizeof buffer);
        if (n == 0) continue;
        if (!verifier.feed(buffer, n) || Update.write(buffer, n) != n) break;
    }
    http.end();
    const auto result = verifier.finish();
    if (result != OtaVerifier::Result::Ok || !Update.end(true)) {
        Update.abort();
        return say(console::error(result == OtaVerifier::Result::Ok ? "ota cannot finish the update" : result_name(result)));
    }
    say(console::ota_done(release.version));
    reboot_asked = true;
}

void connect_mqtt() {
    const Identity& id = session->identity();
    const Outgoing will = session->will();
    if (mqtt.connect(id.client_id().c_str(), id.mqtt_user.c_str(), id.mqtt_pass.c_str(), will.topic.c_str(), 1,
                     will.retain, will.payload.c_str())) {
        say(console::mqtt_connected());
        backoff.reset();
        const Outgoing online = session->on_connected(millis());
        mqtt.publish(online.topic.c_str(), online.payload.c_str(), online.retain);
        mqtt.subscribe(session->topics().control.c_str(), 1);
        was_connected = true;
    } else {
        const int state = mqtt.state();  // 1..5: the CONNACK code; below 0: no answer
        say(state > 0 ? console::mqtt_refused(state) : console::error("mqtt unreachable (state " + std::to_string(state) + ")"));
        next_attempt = millis() + backoff.next(esp_random());
    }
}

}  // namespace

void setup() {
    Serial.begin(115200);
    prefs.begin(kNamespace, true);
    const IdentityRead read = read_identity(PreferencesSource(prefs));
    if (!read.identity) {
        say(console::error("nvs " + read.describe()));
        return;  // nothing to log in with: stay quiet on the network
    }
    const Identity& id = *read.identity;
    say(console::boot(id.serial_number, id.hw_type, id.hw_version, VESPER_FIRMWARE_VERSION));
    WiFi.mode(WIFI_STA);
    WiFi.begin(id.wifi_ssid.c_str(), id.wifi_pass.c_str());
    if (WiFi.waitForConnectResult(20000) != WL_CONNECTED) {
        say(console::wifi_failed("status " + std::to_string(WiFi.status())));
    } else {
        say(console::wifi_connected(WiFi.localIP().toString().c_str()));
    }
    session.reset(new Session(id, VESPER_FIRMWARE_VERSION));
    net.setNoDelay(true);  // status, subscription and heartbeat go out back to back
    mqtt.setServer(id.mqtt_host.c_str(), id.mqtt_port);
    mqtt.setKeepAlive(kKeepAliveSeconds);
    mqtt.setBufferSize(8 * 1024);
    mqtt.setCallback(on_message);
}

void loop() {
    if (!session) return delay(1000);
    if (!mqtt.connected()) {
        if (was_connected) {
            say(console::error("mqtt disconnected (state " + std::to_string(mqtt.state()) + ")"));
            session->on_disconnected();
            was_connected = false;
            next_attempt = millis() + backoff.next(esp_random());
        }
        if (WiFi.status() == WL_CONNECTED && millis() >= next_attempt) connect_mqtt();
        return delay(10);
    }
    mqtt.loop();
    if (auto heartbeat = session->heartbeat_due(millis())) {
        if (mqtt.publish(heartbeat->topic.c_str(), heartbeat->payload.c_str(), heartbeat->retain)) {
            say(console::heartbeat_sent());
        }
    }
    if (ota_asked) {
        ota_asked = false;
        check_for_update();
    }
    if (reboot_asked) {
        say(console::reboot());
        delay(100);
        ESP.restart();
    }
}
