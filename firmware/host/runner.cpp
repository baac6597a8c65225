#include "runner.h"

#include <curl/curl.h>
#include <mosquitto.h>

#include <chrono>
#include <iostream>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "vesper_core.h"

namespace vesper::host {
namespace {

using Clock = std::chrono::steady_clock;

void say(const std::string& line) { std::cout << line << std::endl; }

// What the MQTT callbacks tell the loop.
struct Link {
    Session* session = nullptr;
    Clock::time_point boot;
    bool connected = false;
    bool refused = false;
    std::optional<int> heartbeat_mid;
    bool heartbeat_acked = false;
    std::optional<Command> command;

    std::uint64_t now_ms() const {
        return static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - boot).count());
    }
};

void on_connect(struct mosquitto* mosq, void* obj, int rc) {
    auto* link = static_cast<Link*>(obj);
    if (rc != 0) {
        say(console::mqtt_refused(rc));
        link->refused = true;
        mosquitto_disconnect(mosq);
        return;
    }
    link->connected = true;
    say(console::mqtt_connected());
    const auto online = link->session->on_connected(link->now_ms());
    mosquitto_publish(mosq, nullptr, online.topic.c_str(), static_cast<int>(online.payload.size()),
                      online.payload.data(), 1, online.retain);
    mosquitto_subscribe(mosq, nullptr, link->session->topics().control.c_str(), 1);
}

void on_publish(struct mosquitto*, void* obj, int mid) {
    auto* link = static_cast<Link*>(obj);
    if (link->heartbeat_mid == mid) link->heartbeat_acked = true;
}

void on_message(struct mosquitto*, void* obj, const struct mosquitto_message* message) {
    auto* link = static_cast<Link*>(obj);
    const std::string payload(static_cast<const char*>(message->payload),
                              static_cast<std::size_t>(message->payloadlen));
    const auto command = link->session->on_message(message->topic, payload);
    if (command == Command::Malformed) say(console::error("control message is not a command"));
    if (command == Command::Ota || command == Command::Reboot) link->command = command;
}

std::size_t collect_text(char* data, std::size_t size, std::size_t count, void* into) {
    auto* text = static_cast<std::string*>(into);
    if (text->size() + size * count > kMaxJsonBytes) return 0;  // too large: abort the transfer
    text->append(data, size * count);
    return size * count;
}

struct Download {
    OtaVerifier* verifier;
    std::vector<std::uint8_t>* partition;
};

std::size_t collect_image(char* data, std::size_t size, std::size_t count, void* into) {
    auto* d = static_cast<Download*>(into);
    const auto* bytes = reinterpret_cast<const std::uint8_t*>(data);
    if (!d->verifier->feed(bytes, size * count)) return 0;
    d->partition->insert(d->partition->end(), bytes, bytes + size * count);  // the spare OTA partition
    return size * count;
}

// GET `url` into `sink`; the HTTP status, or -1 when the transfer failed.
long http_get(const std::string& url, curl_write_callback sink, void* into) {
    CURL* curl = curl_easy_init();
    if (curl == nullptr) return -1;
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, into);
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 3L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 120L);
    const CURLcode rc = curl_easy_perform(curl);
    long status = -1;
    if (rc == CURLE_OK || rc == CURLE_WRITE_ERROR) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(curl);
    return rc == CURLE_OK ? status : (rc == CURLE_WRITE_ERROR ? -2 : -1);
}

// Checks for a release and installs a higher one; its version when the device should reboot
// into it.
std::optional<std::string> check_for_update(const RunnerOptions& options, const std::string& running) {
    if (options.api.empty()) {
        say(console::error("ota no update server (--api)"));
        return std::nullopt;
    }
    std::string base = options.api;
    while (!base.empty() && base.back() == '/') base.pop_back();
    const std::string latest = base + "/ota/" + options.board + "/latest.json";
    std::string text;
    const long status = http_get(latest, collect_text, &text);
    if (status != 200) {
        say(console::error(status == -2 ? "ota release description too large"
                                        : "ota cannot fetch latest.json (http " + std::to_string(status) + ")"));
        return std::nullopt;
    }
    const auto parsed = parse_release(text);
    if (!parsed.release) {
        say(console::error("ota release " + parsed.error));
        return std::nullopt;
    }
    const Release& release = *parsed.release;
    const auto decision = decide(running, release);
    if (decision != OtaDecision::Update) {
        say(console::ota_skipped(release.version, decision_name(decision)));
        return std::nullopt;
    }
    say(console::ota_update(running, release.version));
    OtaVerifier verifier(release);
    std::vector<std::uint8_t> partition;
    Download download{&verifier, &partition};
    const long image_status = http_get(resolve_url(latest, release.url), collect_image, &download);
    if (image_status != 200 && image_status != -2) {
        say(console::error("ota cannot fetch the image (http " + std::to_string(image_status) + ")"));
        return std::nullopt;
    }
    const auto result = verifier.finish();
    if (result != OtaVerifier::Result::Ok) {
        say(console::error(result_name(result)));
        return std::nullopt;  // the spare partition is never marked bootable
    }
    say(console::ota_done(release.version));
    return release.version;
}

enum class Ending { Stop, Exit, Reboot };

// One boot of the firmware: until stopped, asked to reboot, or (once) the first acknowledged
// heartbeat.
Ending boot_once(const Identity& identity, const RunnerOptions& options, std::string& firmware,
                 const std::atomic<bool>& stop) {
    Session session(identity, firmware, TopicTemplates{}, options.heartbeat_s);
    Link link;
    link.session = &session;
    link.boot = Clock::now();
    say(console::boot(identity.serial_number, identity.hw_type, identity.hw_version, firmware));
    say(console::wifi_connected("127.0.0.1"));

    struct mosquitto* mosq = mosquitto_new(identity.client_id().c_str(), true, &link);
    if (mosq == nullptr) {
        say(console::error("mqtt cannot create a client"));
        return Ending::Exit;
    }
    mosquitto_int_option(mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    // The status, the subscription and the heartbeat go out back to back: without this, Nagle's
    // algorithm holds each small packet until the previous one is acknowledged.
    mosquitto_int_option(mosq, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_username_pw_set(mosq, identity.mqtt_user.c_str(), identity.mqtt_pass.c_str());
    const auto will = session.will();
    mosquitto_will_set(mosq, will.topic.c_str(), static_cast<int>(will.payload.size()), will.payload.data(), 1,
                       will.retain);
    mosquitto_connect_callback_set(mosq, on_connect);
    mosquitto_publish_callback_set(mosq, on_publish);
    mosquitto_message_callback_set(mosq, on_message);

    Backoff backoff;
    std::mt19937 random(std::random_device{}());
    bool link_up = false, ever = false;
    auto next_attempt = Clock::now();
    Ending ending = Ending::Stop;
    while (!stop) {
        if (!link_up && Clock::now() >= next_attempt) {
            const int rc = ever ? mosquitto_reconnect(mosq)
                                : mosquitto_connect(mosq, options.broker_host.c_str(), options.broker_port,
                                                    kKeepAliveSeconds);
            ever = true;
            if (rc == MOSQ_ERR_SUCCESS) {
                link_up = true;
                link.refused = false;
            } else {
                say(console::error(std::string("mqtt unreachable (") + mosquitto_strerror(rc) + ")"));
                next_attempt = Clock::now() + std::chrono::milliseconds(backoff.next(random()));
            }
        }
        if (!link_up) {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
            continue;
        }
        const int rc = mosquitto_loop(mosq, 100, 1);
        if (link.connected && !link.refused) backoff.reset();
        if (rc != MOSQ_ERR_SUCCESS || link.refused) {
            if (link.connected) say(console::error(std::string("mqtt disconnected (") + mosquitto_strerror(rc) + ")"));
            link.connected = false;
            link_up = false;
            session.on_disconnected();
            next_attempt = Clock::now() + std::chrono::milliseconds(backoff.next(random()));
            continue;
        }
        if (!link.connected) continue;
        if (auto heartbeat = session.heartbeat_due(link.now_ms())) {
            int mid = 0;
            if (mosquitto_publish(mosq, &mid, heartbeat->topic.c_str(), static_cast<int>(heartbeat->payload.size()),
                                  heartbeat->payload.data(), 1, heartbeat->retain) == MOSQ_ERR_SUCCESS) {
                say(console::heartbeat_sent());
                if (!link.heartbeat_mid) link.heartbeat_mid = mid;
            }
        }
        if (options.once && link.heartbeat_acked) {
            mosquitto_disconnect(mosq);
            mosquitto_loop(mosq, 100, 1);
            ending = Ending::Exit;
            break;
        }
        if (link.command) {
            const Command command = *link.command;
            link.command.reset();
            if (command == Command::Reboot) {
                ending = Ending::Reboot;
                break;
            }
            if (auto installed = check_for_update(options, firmware)) {
                firmware = *installed;
                ending = Ending::Reboot;
                break;
            }
        }
    }
    if (ending == Ending::Reboot) say(console::reboot());
    // A reboot drops the connection without a DISCONNECT, so the broker publishes the will.
    if (ending == Ending::Stop) mosquitto_disconnect(mosq);
    mosquitto_destroy(mosq);
    return ending;
}

}  // namespace

int run_device(const Identity& identity, RunnerOptions options, const std::atomic<bool>& stop) {
    mosquitto_lib_init();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    std::string firmware = options.firmware_version;
    Ending ending;
    do {
        ending = boot_once(identity, options, firmware, stop);
    } while (ending == Ending::Reboot && !stop);
    curl_global_cleanup();
    mosquitto_lib_cleanup();
    return 0;
}

}  // namespace vesper::host
