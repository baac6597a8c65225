// Vesper firmware: the glue around lib/vesper_core on Arduino-ESP32 3.x (ESP-IDF 5). Everything
// that decides is in the core (host-tested); this file reads NVS, joins Wi-Fi, runs ESP-IDF's
// MQTT client over TLS, downloads updates over HTTPS, keeps or rolls back an update, and prints
// the console lines the core makes. The same file is the host program `vesper-device` (linked
// with firmware/host/), which the tests run against the real broker and backend.
#include <Arduino.h>
#include <Preferences.h>
#include <WiFi.h>
#include <esp_app_desc.h>
#include <esp_chip_info.h>
#include <esp_crt_bundle.h>
#include <esp_http_client.h>
#include <esp_mac.h>
#include <esp_ota_ops.h>
#include <esp_random.h>
#include <esp_system.h>
#include <esp_task_wdt.h>
#include <esp_timer.h>
#include <mqtt_client.h>

#include <cstdio>
#include <deque>
#include <memory>
#include <mutex>

#include "vesper_core.h"

using namespace vesper;

// Arduino-ESP32 marks a freshly updated app valid in initArduino(), before setup(), unless this
// says the application decides (cores/esp32/esp32-hal-misc.c, CONFIG_APP_ROLLBACK_ENABLE). We
// decide: only after the MQTT login and an acknowledged heartbeat (loop()).
extern "C" bool verifyRollbackLater() { return true; }

namespace {

constexpr std::uint32_t kWatchdogMs = 30000;  // the loop resets it every pass, a download every chunk
constexpr unsigned long kWifiJoinMs = 20000;
constexpr int kHttpTimeoutMs = 10000;

std::uint64_t now_ms() { return static_cast<std::uint64_t>(esp_timer_get_time()) / 1000; }

void say(const std::string& line) { Serial.println(line.c_str()); }

// ESP-IDF's nvs_get_* through Arduino's Preferences, namespace `vesper`, read-only.
class PreferencesSource : public KeyValueSource {
  public:
    explicit PreferencesSource(Preferences& prefs) : prefs_(prefs) {}
    std::optional<NvsType> type_of(const char* key) const override {
        switch (prefs_.getType(key)) {
            case PT_I8: return NvsType::I8;
            case PT_U8: return NvsType::U8;
            case PT_I16: return NvsType::I16;
            case PT_U16: return NvsType::U16;
            case PT_I32: return NvsType::I32;
            case PT_U32: return NvsType::U32;
            case PT_I64: return NvsType::I64;
            case PT_U64: return NvsType::U64;
            case PT_STR: return NvsType::String;
            case PT_BLOB: return NvsType::Blob;
            case PT_INVALID: break;
        }
        return std::nullopt;
    }
    std::optional<std::string> get_string(const char* key) const override {
        if (prefs_.getType(key) != PT_STR) return std::nullopt;
        return std::string(prefs_.getString(key).c_str());
    }
    std::optional<std::uint64_t> get_unsigned(const char* key) const override {
        switch (prefs_.getType(key)) {
            case PT_U8: return prefs_.getUChar(key);
            case PT_U16: return prefs_.getUShort(key);
            case PT_U32: return prefs_.getUInt(key);
            case PT_U64: return prefs_.getULong64(key);
            default: return std::nullopt;
        }
    }

  private:
    Preferences& prefs_;
};

// What the MQTT task tells the loop: esp-mqtt calls the handler on its own task.
struct MqttEvent {
    enum class Kind { Connected, Disconnected, Refused, Unreachable, Acknowledged, Control } kind;
    int value = 0;
    Command command = Command::Unknown;
};

Preferences prefs;
std::unique_ptr<Session> session;
std::unique_ptr<UpdateConfirmation> confirmation;
std::unique_ptr<OfflineWatch> offline;
esp_mqtt_client_handle_t mqtt = nullptr;
// esp-mqtt and esp_http_client keep a pointer to the CA, never a copy: these live for the program.
std::string mqtt_ca, ota_ca;
std::mutex inbox_lock;
std::deque<MqttEvent> inbox;
bool online = false, ota_asked = false, reboot_asked = false;

void post(MqttEvent event) {
    std::lock_guard<std::mutex> guard(inbox_lock);
    if (inbox.size() < 64) inbox.push_back(event);
}

void on_mqtt_event(void*, esp_event_base_t, int32_t id, void* data) {
    const auto* event = static_cast<esp_mqtt_event_handle_t>(data);
    switch (static_cast<esp_mqtt_event_id_t>(id)) {
        case MQTT_EVENT_CONNECTED: post({MqttEvent::Kind::Connected}); break;
        case MQTT_EVENT_DISCONNECTED: post({MqttEvent::Kind::Disconnected}); break;
        case MQTT_EVENT_PUBLISHED: post({MqttEvent::Kind::Acknowledged, event->msg_id}); break;
        case MQTT_EVENT_DATA: {
            // A control message is small; one split over several events is not a command.
            const bool whole = event->current_data_offset == 0 && event->data_len == event->total_data_len;
            const std::string topic(event->topic, static_cast<std::size_t>(event->topic_len));
            const std::string payload(event->data, static_cast<std::size_t>(event->data_len));
            post({MqttEvent::Kind::Control, 0,
                  whole ? session->on_message(topic, payload, event->retain) : Command::Malformed});
            break;
        }
        case MQTT_EVENT_ERROR:
            if (event->error_handle->error_type == MQTT_ERROR_TYPE_CONNECTION_REFUSED) {
                post({MqttEvent::Kind::Refused, event->error_handle->connect_return_code});
            } else {
                post({MqttEvent::Kind::Unreachable, event->error_handle->esp_tls_last_esp_err});
            }
            break;
        default: break;
    }
}

const char* reset_reason_name(esp_reset_reason_t reason) {
    switch (reason) {
        case ESP_RST_POWERON: return "poweron";
        case ESP_RST_SW: return "sw";
        case ESP_RST_PANIC: return "panic";
        case ESP_RST_INT_WDT:
        case ESP_RST_TASK_WDT:
        case ESP_RST_WDT: return "wdt";
        case ESP_RST_BROWNOUT: return "brownout";
        default: return "other";
    }
}

const char* chip_name() {
    esp_chip_info_t chip;
    esp_chip_info(&chip);
    switch (chip.model) {
        case CHIP_ESP32: return "esp32";
        case CHIP_ESP32S2: return "esp32s2";
        case CHIP_ESP32S3: return "esp32s3";
        case CHIP_ESP32C3: return "esp32c3";
        case CHIP_ESP32C2: return "esp32c2";
        case CHIP_ESP32C6: return "esp32c6";
        case CHIP_ESP32H2: return "esp32h2";
    }
    return "unknown";
}

std::string mac_text() {
    std::uint8_t mac[6] = {};
    esp_read_mac(mac, ESP_MAC_WIFI_STA);
    char text[18];
    std::snprintf(text, sizeof text, "%02X:%02X:%02X:%02X:%02X:%02X", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
    return text;
}

std::string wifi_reason(std::uint8_t status) {
    switch (status) {
        case WL_NO_SSID_AVAIL: return "no ap found";
        case WL_CONNECT_FAILED: return "auth failed";
        default: return "status " + std::to_string(status);
    }
}

Vitals vitals() { return {WiFi.RSSI(), esp_get_free_heap_size(), reset_reason_name(esp_reset_reason())}; }

bool pending_update() {
    esp_ota_img_states_t state = ESP_OTA_IMG_UNDEFINED;
    return esp_ota_get_state_partition(esp_ota_get_running_partition(), &state) == ESP_OK &&
           state == ESP_OTA_IMG_PENDING_VERIFY;
}

// ESP-IDF's MQTT client on its own task: TLS with the server verified (the CA from NVS, else the
// certificate bundle), QoS 1, the retained will, reconnecting by itself after a spread delay.
void start_mqtt(const Identity& id) {
    esp_mqtt_client_config_t config = {};
    config.broker.address.hostname = id.mqtt_host.c_str();
    config.broker.address.port = id.mqtt_port;
    config.broker.address.transport = MQTT_TRANSPORT_OVER_SSL;
    if (!id.mqtt_ca.empty()) {
        mqtt_ca = id.mqtt_ca;
        config.broker.verification.certificate = mqtt_ca.c_str();
    } else {
        config.broker.verification.crt_bundle_attach = esp_crt_bundle_attach;
    }
    config.credentials.username = id.mqtt_user.c_str();
    config.credentials.client_id = id.client_id().c_str();
    config.credentials.authentication.password = id.mqtt_pass.c_str();
    const Outgoing will = session->will();
    config.session.last_will.topic = will.topic.c_str();
    config.session.last_will.msg = will.payload.c_str();
    config.session.last_will.qos = will.qos;
    config.session.last_will.retain = will.retain;
    config.session.keepalive = kKeepAliveSeconds;
    config.session.protocol_ver = MQTT_PROTOCOL_V_3_1_1;
    // A factory's boards that lost the broker together do not all come back together.
    config.network.reconnect_timeout_ms = static_cast<int>(2000 + esp_random() % 8000);
    config.network.timeout_ms = kHttpTimeoutMs;
    mqtt = esp_mqtt_client_init(&config);
    esp_mqtt_client_register_event(mqtt, MQTT_EVENT_ANY, on_mqtt_event, nullptr);
    esp_mqtt_client_start(mqtt);
}

void publish(const Outgoing& message) {
    esp_mqtt_client_publish(mqtt, message.topic.c_str(), message.payload.data(), static_cast<int>(message.payload.size()),
                            message.qos, message.retain);
}

void handle(const MqttEvent& event) {
    switch (event.kind) {
        case MqttEvent::Kind::Connected:
            online = true;
            say(console::mqtt_connected());
            publish(session->on_connected(now_ms()));
            esp_mqtt_client_subscribe(mqtt, session->topics().control.c_str(), 1);
            break;
        case MqttEvent::Kind::Disconnected:
            if (online) say(console::error("mqtt disconnected"));
            online = false;
            session->on_disconnected();
            break;
        case MqttEvent::Kind::Refused: say(console::mqtt_refused(event.value)); break;
        case MqttEvent::Kind::Unreachable:
            say(console::error(std::string("mqtt unreachable (") + esp_err_to_name(event.value) + ")"));
            break;
        case MqttEvent::Kind::Acknowledged:
            if (session->on_acknowledged(event.value)) confirmation->on_heartbeat_acknowledged();
            break;
        case MqttEvent::Kind::Control:
            switch (event.command) {
                case Command::Ota: ota_asked = true; break;
                case Command::Reboot: reboot_asked = true; break;
                case Command::Malformed: say(console::error("control message is not a command")); break;
                case Command::Retained: say(console::control_ignored("retained")); break;
                case Command::Unknown: break;
            }
            break;
    }
}

// The MQTT side of one loop pass: events, the heartbeat, the update's confirmation. Also run
// between the chunks of a download, so an update never stops the heartbeats.
void service_session() {
    std::deque<MqttEvent> events;
    {
        std::lock_guard<std::mutex> guard(inbox_lock);
        events.swap(inbox);
    }
    for (const auto& event : events) handle(event);
    const std::uint64_t now = now_ms();
    if (online) offline->online(now);
    if (online && session->heartbeat_is_due(now)) {  // the vitals are read only then
        if (auto heartbeat = session->heartbeat_due(now, vitals())) {
            const int msg_id = esp_mqtt_client_publish(mqtt, heartbeat->topic.c_str(), heartbeat->payload.data(),
                                                       static_cast<int>(heartbeat->payload.size()), heartbeat->qos,
                                                       heartbeat->retain);
            if (msg_id > 0) {
                session->heartbeat_queued(msg_id);
                say(console::heartbeat_sent());
            }
        }
    }
    switch (confirmation->poll(now)) {
        case UpdateConfirmation::Step::Confirm:
            esp_ota_mark_app_valid_cancel_rollback();
            say(console::ota_confirmed(session->firmware_version()));
            break;
        case UpdateConfirmation::Step::RollBack:
            say(console::ota_rollback(session->firmware_version(), online ? "no-heartbeat-ack" : "no-mqtt"));
            esp_ota_mark_app_invalid_rollback_and_reboot();  // returns only when no previous app exists
            say(console::error("ota rollback impossible: no previous app"));
            break;
        case UpdateConfirmation::Step::Wait: break;
    }
}

bool allowed_url(const std::string& url) {
#ifdef VESPER_ALLOW_HTTP
    if (url.rfind("http://", 0) == 0) return true;
#endif
    return url.rfind("https://", 0) == 0;
}

// One GET over HTTPS with the server verified (the CA from NVS, else the certificate bundle).
class HttpGet {
  public:
    explicit HttpGet(const std::string& url) {
        esp_http_client_config_t config = {};
        config.url = url.c_str();
        config.timeout_ms = kHttpTimeoutMs;
        if (!ota_ca.empty()) {
            config.cert_pem = ota_ca.c_str();
        } else {
            config.crt_bundle_attach = esp_crt_bundle_attach;
        }
        client_ = esp_http_client_init(&config);
        if (client_ != nullptr && esp_http_client_open(client_, 0) == ESP_OK &&
            esp_http_client_fetch_headers(client_) >= 0) {
            status_ = esp_http_client_get_status_code(client_);
        }
    }
    ~HttpGet() {
        if (client_ == nullptr) return;
        esp_http_client_close(client_);
        esp_http_client_cleanup(client_);
    }
    HttpGet(const HttpGet&) = delete;
    HttpGet& operator=(const HttpGet&) = delete;

    int status() const { return status_; }
    // Bytes read into `buffer`; 0 at the end, below 0 on an error.
    int read(char* buffer, int len) { return esp_http_client_read(client_, buffer, len); }

  private:
    esp_http_client_handle_t client_ = nullptr;
    int status_ = -1;
};

std::optional<Release> fetch_release(const std::string& latest) {
    HttpGet get(latest);
    if (get.status() != 200) {
        say(console::error("ota cannot fetch latest.json (http " + std::to_string(get.status()) + ")"));
        return std::nullopt;
    }
    std::string text;
    char buffer[512];
    for (int n; (n = get.read(buffer, sizeof buffer)) > 0;) {
        text.append(buffer, static_cast<std::size_t>(n));
        if (text.size() > kMaxJsonBytes) {
            say(console::error("ota release description too large"));
            return std::nullopt;
        }
    }
    const auto parsed = parse_release(text);
    if (!parsed.release) say(console::error("ota release " + parsed.error));
    return parsed.release;
}

// Streams the image into the spare app partition while MQTT goes on; the boot partition switches
// only for a whole image with the announced size, SHA-256, version and project.
bool install(const std::string& url, const Release& release) {
    HttpGet get(url);
    if (get.status() != 200) {
        say(console::error("ota cannot fetch the image (http " + std::to_string(get.status()) + ")"));
        return false;
    }
    const esp_partition_t* target = esp_ota_get_next_update_partition(nullptr);
    esp_ota_handle_t ota = 0;
    if (target == nullptr || esp_ota_begin(target, release.size, &ota) != ESP_OK) {
        say(console::error("ota no partition for the image"));
        return false;
    }
    OtaVerifier verifier(release, esp_app_get_description()->project_name);
    static char buffer[4096];
    bool written = true;
    for (int n; (n = get.read(buffer, sizeof buffer)) > 0;) {
        esp_task_wdt_reset();
        const auto* bytes = reinterpret_cast<const std::uint8_t*>(buffer);
        if (!verifier.feed(bytes, static_cast<std::size_t>(n)) || esp_ota_write(ota, buffer, static_cast<std::size_t>(n)) != ESP_OK) {
            written = false;
            break;
        }
        service_session();
    }
    const auto result = verifier.finish();
    if (result != OtaVerifier::Result::Ok || !written) {
        esp_ota_abort(ota);
        say(console::error(result != OtaVerifier::Result::Ok ? result_name(result) : "ota cannot write the image"));
        return false;
    }
    if (esp_ota_end(ota) != ESP_OK || esp_ota_set_boot_partition(target) != ESP_OK) {
        say(console::error("ota image is not a valid app"));
        return false;
    }
    return true;
}

void check_for_update() {
    const std::string latest = std::string(VESPER_OTA_BASE) + "/ota/" + VESPER_BOARD + "/latest.json";
    if (!allowed_url(latest)) return say(console::error("ota needs https"));
    const auto release = fetch_release(latest);
    if (!release) return;
    const auto decision = decide(session->firmware_version(), *release);
    if (decision != OtaDecision::Update) return say(console::ota_skipped(release->version, decision_name(decision)));
    const std::string url = resolve_url(latest, release->url);
    if (!allowed_url(url)) return say(console::error("ota needs https"));
    say(console::ota_update(session->firmware_version(), release->version));
    if (!install(url, *release)) return;
    say(console::ota_done(release->version));
    reboot_asked = true;
}

}  // namespace

void setup() {
    Serial.begin(115200);
    const esp_task_wdt_config_t watchdog = {kWatchdogMs, 0, true};
    esp_task_wdt_reconfigure(&watchdog);
    esp_task_wdt_add(nullptr);
    if (!prefs.begin(kNamespace, true)) return say(console::error("nvs has no namespace vesper"));
    const IdentityRead read = read_identity(PreferencesSource(prefs));
    prefs.end();
    if (!read.identity) return say(console::error("nvs " + read.describe()));  // nothing to log in with
    const Identity& id = *read.identity;
    const char* firmware = esp_app_get_description()->version;
    say(console::boot(id.serial_number, id.hw_type, id.hw_version, firmware, mac_text(), chip_name()));
    ota_ca = id.ota_ca;
    session.reset(new Session(id, firmware));
    confirmation.reset(new UpdateConfirmation(pending_update(), now_ms(), id.ota_confirm_s));
    offline.reset(new OfflineWatch(now_ms(), id.offline_restart_s));
    WiFi.mode(WIFI_STA);
    WiFi.begin(id.wifi_ssid.c_str(), id.wifi_pass.c_str());
    const std::uint8_t joined = WiFi.waitForConnectResult(kWifiJoinMs);
    if (joined == WL_CONNECTED) {
        say(console::wifi_connected(WiFi.localIP().toString().c_str()));
    } else {
        say(console::wifi_failed(wifi_reason(joined)));
    }
    start_mqtt(session->identity());
}

void loop() {
    esp_task_wdt_reset();
    if (!session) return delay(1000);  // no identity: stay quiet on the network
    service_session();
    if (offline->restart_due(now_ms())) {
        say(console::restart("offline"));
        esp_restart();
    }
    if (ota_asked) {
        ota_asked = false;
        check_for_update();
    }
    if (reboot_asked) {
        say(console::reboot());
        delay(100);
        esp_restart();
    }
    delay(10);
}
