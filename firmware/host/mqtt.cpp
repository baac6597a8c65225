// The host board's esp-mqtt: the API and events of include/mqtt_client.h over libmosquitto, on a
// task (thread) of its own, as esp_mqtt_client_start() runs esp_mqtt_task (espressif/esp-mqtt
// mqtt_client.c). What it keeps from the real client is listed in the header.
#include <mosquitto.h>
#include <mqtt_client.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "board.h"
#include "tls.h"

using vesper::host::Board;

struct esp_mqtt_client {
    std::string host, username, password, client_id, will_topic, will_msg;
    int port = 1883;
    bool tls = false, skip_common_name = false, clean_session = true, auto_reconnect = true;
    const char* certificate = nullptr;  // not copied (esp-mqtt keeps the application's pointer)
    bool bundle = false;
    int will_qos = 0, will_retain = 0, keepalive = 120, reconnect_ms = 10000;
    esp_event_handler_t handler = nullptr;
    void* handler_arg = nullptr;
    mosquitto* mosq = nullptr;
    std::thread task;
    std::atomic<bool> running{false};
    std::atomic<bool> connected{false}, refused{false};
    std::mutex acked_lock;
    std::set<int> awaiting_ack;  // QoS 1 message ids: only these get MQTT_EVENT_PUBLISHED
    int ca_fd = -1;
};

namespace {

void dispatch(esp_mqtt_client* client, esp_mqtt_event_t& event) {
    event.client = client;
    event.protocol_ver = MQTT_PROTOCOL_V_3_1_1;
    if (client->handler != nullptr) client->handler(client->handler_arg, "MQTT_EVENTS", event.event_id, &event);
}

void dispatch_simple(esp_mqtt_client* client, esp_mqtt_event_id_t id) {
    esp_mqtt_event_t event{};
    event.event_id = id;
    dispatch(client, event);
}

void dispatch_error(esp_mqtt_client* client, esp_mqtt_error_type_t type, esp_err_t tls_error, int return_code) {
    esp_mqtt_error_codes_t codes{};
    codes.error_type = type;
    codes.esp_tls_last_esp_err = tls_error;
    codes.connect_return_code = static_cast<esp_mqtt_connect_return_code_t>(return_code);
    esp_mqtt_event_t event{};
    event.event_id = MQTT_EVENT_ERROR;
    event.error_handle = &codes;
    dispatch(client, event);
}

void on_connect(mosquitto*, void* obj, int rc) {
    auto* client = static_cast<esp_mqtt_client*>(obj);
    if (rc != 0) {
        client->refused = true;
        dispatch_error(client, MQTT_ERROR_TYPE_CONNECTION_REFUSED, ESP_OK, rc);
        return;
    }
    client->connected = true;
    dispatch_simple(client, MQTT_EVENT_CONNECTED);
}

void on_publish(mosquitto*, void* obj, int mid) {
    auto* client = static_cast<esp_mqtt_client*>(obj);
    {
        std::lock_guard<std::mutex> guard(client->acked_lock);
        if (client->awaiting_ack.erase(mid) == 0) return;
    }
    esp_mqtt_event_t event{};
    event.event_id = MQTT_EVENT_PUBLISHED;
    event.msg_id = mid;
    dispatch(client, event);
}

void on_message(mosquitto*, void* obj, const mosquitto_message* message) {
    auto* client = static_cast<esp_mqtt_client*>(obj);
    std::string topic(message->topic);
    std::string data(static_cast<const char*>(message->payload), static_cast<std::size_t>(message->payloadlen));
    esp_mqtt_event_t event{};
    event.event_id = MQTT_EVENT_DATA;
    event.topic = topic.data();
    event.topic_len = static_cast<int>(topic.size());
    event.data = data.data();
    event.data_len = event.total_data_len = static_cast<int>(data.size());
    event.msg_id = message->mid;
    event.qos = message->qos;
    event.retain = message->retain;
    dispatch(client, event);
}

void wait(const esp_mqtt_client* client, int ms) {
    for (int waited = 0; waited < ms && client->running; waited += 50) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
}

// esp_mqtt_task: connect (when the network is up), run the session until it ends, report,
// wait reconnect_timeout_ms, again.
void run(esp_mqtt_client* client) {
    while (client->running) {
        dispatch_simple(client, MQTT_EVENT_BEFORE_CONNECT);
        client->connected = client->refused = false;
        int rc = MOSQ_ERR_NO_CONN;
        if (Board::get().wifi_connected() && (!client->tls || client->ca_fd != -2)) {
            rc = mosquitto_connect(client->mosq, client->host.c_str(), client->port, client->keepalive);
        }
        if (rc != MOSQ_ERR_SUCCESS) {
            const esp_err_t why = client->tls && client->ca_fd == -2 ? ESP_ERR_MBEDTLS_SSL_SETUP_FAILED
                                  : rc == MOSQ_ERR_TLS              ? ESP_ERR_MBEDTLS_SSL_HANDSHAKE_FAILED
                                                                    : ESP_ERR_ESP_TLS_FAILED_CONNECT_TO_HOST;
            dispatch_error(client, MQTT_ERROR_TYPE_TCP_TRANSPORT, why, 0);
        } else {
            // libmosquitto may finish the TLS handshake here rather than in mosquitto_connect():
            // a connection that ends before its CONNACK is a transport error, as esp-mqtt
            // reports one (esp_mqtt_client.c: MQTT_ERROR_TYPE_TCP_TRANSPORT on a failed connect).
            int loop_rc = MOSQ_ERR_SUCCESS;
            while (client->running && !client->refused &&
                   (loop_rc = mosquitto_loop(client->mosq, 100, 1)) == MOSQ_ERR_SUCCESS) {
            }
            if (client->running && !client->refused && !client->connected) {
                dispatch_error(client, MQTT_ERROR_TYPE_TCP_TRANSPORT,
                               loop_rc == MOSQ_ERR_TLS ? ESP_ERR_MBEDTLS_SSL_HANDSHAKE_FAILED
                                                       : ESP_ERR_ESP_TLS_FAILED_CONNECT_TO_HOST,
                               0);
            }
            if (client->refused || !client->running) mosquitto_disconnect(client->mosq);
        }
        // esp_mqtt_abort_connection: DISCONNECTED after every ended or failed attempt.
        dispatch_simple(client, MQTT_EVENT_DISCONNECTED);
        client->connected = false;
        {
            std::lock_guard<std::mutex> guard(client->acked_lock);
            client->awaiting_ack.clear();
        }
        if (!client->auto_reconnect) break;
        wait(client, client->reconnect_ms);
    }
}

std::string copy(const char* text) { return text == nullptr ? std::string() : std::string(text); }

}  // namespace

esp_mqtt_client_handle_t esp_mqtt_client_init(const esp_mqtt_client_config_t* config) {
    static std::once_flag library;
    std::call_once(library, [] { mosquitto_lib_init(); });
    auto* client = new esp_mqtt_client;
    const auto& address = config->broker.address;
    client->host = copy(address.hostname);
    client->tls = address.transport == MQTT_TRANSPORT_OVER_SSL;
    client->port = address.port != 0 ? static_cast<int>(address.port) : (client->tls ? 8883 : 1883);
    client->certificate = config->broker.verification.certificate;
    client->bundle = config->broker.verification.crt_bundle_attach != nullptr;
    client->skip_common_name = config->broker.verification.skip_cert_common_name_check;
    client->username = copy(config->credentials.username);
    client->password = copy(config->credentials.authentication.password);
    client->client_id = copy(config->credentials.client_id);
    client->will_topic = copy(config->session.last_will.topic);
    client->will_msg = config->session.last_will.msg_len > 0
                           ? std::string(config->session.last_will.msg, static_cast<std::size_t>(config->session.last_will.msg_len))
                           : copy(config->session.last_will.msg);
    client->will_qos = config->session.last_will.qos;
    client->will_retain = config->session.last_will.retain;
    client->keepalive = config->session.keepalive > 0 ? config->session.keepalive : 120;
    client->clean_session = !config->session.disable_clean_session;
    client->reconnect_ms = config->network.reconnect_timeout_ms > 0 ? config->network.reconnect_timeout_ms : 10000;
    client->auto_reconnect = !config->network.disable_auto_reconnect;
    client->mosq = mosquitto_new(client->client_id.c_str(), client->clean_session, client);
    if (client->mosq == nullptr) {
        delete client;
        return nullptr;
    }
    mosquitto_threaded_set(client->mosq, true);
    mosquitto_int_option(client->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    mosquitto_username_pw_set(client->mosq, client->username.c_str(), client->password.c_str());
    if (!client->will_topic.empty()) {
        mosquitto_will_set(client->mosq, client->will_topic.c_str(), static_cast<int>(client->will_msg.size()),
                           client->will_msg.data(), client->will_qos, client->will_retain != 0);
    }
    mosquitto_connect_callback_set(client->mosq, on_connect);
    mosquitto_publish_callback_set(client->mosq, on_publish);
    mosquitto_message_callback_set(client->mosq, on_message);
    return client;
}

esp_err_t esp_mqtt_client_register_event(esp_mqtt_client_handle_t client, esp_mqtt_event_id_t, esp_event_handler_t handler,
                                         void* arg) {
    if (client == nullptr) return ESP_ERR_INVALID_ARG;
    client->handler = handler;
    client->handler_arg = arg;
    return ESP_OK;
}

esp_err_t esp_mqtt_client_start(esp_mqtt_client_handle_t client) {
    if (client == nullptr || client->running) return ESP_FAIL;
    if (client->tls) {
        // Read when the client starts, as esp-tls reads the certificate on connecting.
        const auto anchors = vesper::host::trust_anchors(client->certificate, client->bundle);
        if (!anchors) {
            client->ca_fd = -2;  // every attempt fails: no server verification option
        } else {
            client->ca_fd = anchors->fd;
            mosquitto_tls_set(client->mosq, anchors->ca_file.c_str(), nullptr, nullptr, nullptr, nullptr);
            mosquitto_tls_opts_set(client->mosq, 1, nullptr, nullptr);
            mosquitto_tls_insecure_set(client->mosq, client->skip_common_name);
        }
    }
    client->running = true;
    client->task = std::thread(run, client);
    return ESP_OK;
}

esp_err_t esp_mqtt_client_stop(esp_mqtt_client_handle_t client) {
    if (client == nullptr || !client->running) return ESP_FAIL;
    client->running = false;
    client->task.join();
    return ESP_OK;
}

esp_err_t esp_mqtt_client_destroy(esp_mqtt_client_handle_t client) {
    if (client == nullptr) return ESP_ERR_INVALID_ARG;
    if (client->running) esp_mqtt_client_stop(client);
    mosquitto_destroy(client->mosq);
    if (client->ca_fd >= 0) ::close(client->ca_fd);
    delete client;
    return ESP_OK;
}

int esp_mqtt_client_publish(esp_mqtt_client_handle_t client, const char* topic, const char* data, int len, int qos,
                            int retain) {
    if (client == nullptr) return -1;
    if (len <= 0 && data != nullptr) len = static_cast<int>(std::char_traits<char>::length(data));
    std::lock_guard<std::mutex> guard(client->acked_lock);
    int mid = 0;
    if (mosquitto_publish(client->mosq, &mid, topic, len, data, qos, retain != 0) != MOSQ_ERR_SUCCESS) return -1;
    if (qos == 0) return 0;
    client->awaiting_ack.insert(mid);
    return mid;
}

int esp_mqtt_client_subscribe_single(esp_mqtt_client_handle_t client, const char* topic, int qos) {
    if (client == nullptr || !client->connected) return -1;  // esp-mqtt: "Client has not connected"
    int mid = 0;
    return mosquitto_subscribe(client->mosq, &mid, topic, qos) == MOSQ_ERR_SUCCESS ? mid : -1;
}
