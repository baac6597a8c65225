// Host board layer (a stand-in, not ESP-IDF): ESP-IDF's MQTT client, with the API, configuration
// and events of espressif/esp-mqtt (commit 5a9ba05a, include/mqtt_client.h: esp_mqtt_event_t at
// line 212, esp_mqtt_client_config_t at line 250, "certificate ... not copied" at line 280), over
// libmosquitto and real sockets to a real broker. Kept from the real client (mqtt_client.c:
// esp_mqtt_client_init line 1024, reconnect_timeout_ms default line 628, refused CONNACK line 988,
// esp_mqtt_abort_connection line 997, esp_mqtt_task line 1972, esp_mqtt_client_publish line 2568,
// transport errors line 2788):
// - its own task: esp_mqtt_client_start() runs the connection, keepalive and events on a thread
//   of their own, so the application's loop never starves them; events reach the handler there;
// - strings of the configuration are copied, `broker.verification.certificate` is NOT (the
//   application keeps it alive);
// - mqtts:// verifies the server: with `certificate` against that CA only, with
//   `crt_bundle_attach` against the bundle, and with neither the connection fails (esp-tls:
//   "No server verification option set"); the host name is checked unless
//   skip_cert_common_name_check;
// - esp_mqtt_client_publish() returns the message id (> 0 for QoS 1, 0 for QoS 0), -1 when it
//   cannot; MQTT_EVENT_PUBLISHED carries the id of an acknowledged QoS 1 message;
// - a refused CONNACK is MQTT_EVENT_ERROR (MQTT_ERROR_TYPE_CONNECTION_REFUSED, the return code)
//   then MQTT_EVENT_DISCONNECTED; it reconnects after network.reconnect_timeout_ms (default
//   10000) unless disable_auto_reconnect;
// - MQTT_EVENT_DATA carries topic, payload and the retain flag of each message.
// The transport only works while the host board's Wi-Fi is connected.
#pragma once

#include <cstddef>
#include <cstdint>

#include "esp_err.h"
#include "esp_event.h"

typedef struct esp_mqtt_client* esp_mqtt_client_handle_t;

typedef enum {
    MQTT_EVENT_ANY = -1,
    MQTT_EVENT_ERROR = 0,
    MQTT_EVENT_CONNECTED,
    MQTT_EVENT_DISCONNECTED,
    MQTT_EVENT_SUBSCRIBED,
    MQTT_EVENT_UNSUBSCRIBED,
    MQTT_EVENT_PUBLISHED,
    MQTT_EVENT_DATA,
    MQTT_EVENT_BEFORE_CONNECT,
    MQTT_EVENT_DELETED,
} esp_mqtt_event_id_t;

typedef enum {
    MQTT_CONNECTION_ACCEPTED = 0,
    MQTT_CONNECTION_REFUSE_PROTOCOL,
    MQTT_CONNECTION_REFUSE_ID_REJECTED,
    MQTT_CONNECTION_REFUSE_SERVER_UNAVAILABLE,
    MQTT_CONNECTION_REFUSE_BAD_USERNAME,
    MQTT_CONNECTION_REFUSE_NOT_AUTHORIZED,
} esp_mqtt_connect_return_code_t;

typedef enum {
    MQTT_ERROR_TYPE_NONE = 0,
    MQTT_ERROR_TYPE_TCP_TRANSPORT,
    MQTT_ERROR_TYPE_CONNECTION_REFUSED,
    MQTT_ERROR_TYPE_SUBSCRIBE_FAILED,
} esp_mqtt_error_type_t;

typedef enum {
    MQTT_TRANSPORT_UNKNOWN = 0x0,
    MQTT_TRANSPORT_OVER_TCP,
    MQTT_TRANSPORT_OVER_SSL,
    MQTT_TRANSPORT_OVER_WS,
    MQTT_TRANSPORT_OVER_WSS,
} esp_mqtt_transport_t;

typedef enum {
    MQTT_PROTOCOL_UNDEFINED = 0,
    MQTT_PROTOCOL_V_3_1,
    MQTT_PROTOCOL_V_3_1_1,
    MQTT_PROTOCOL_V_5,
} esp_mqtt_protocol_ver_t;

typedef struct esp_mqtt_error_codes {
    esp_err_t esp_tls_last_esp_err;
    int esp_tls_stack_err;
    int esp_tls_cert_verify_flags;
    esp_mqtt_error_type_t error_type;
    esp_mqtt_connect_return_code_t connect_return_code;
    int esp_transport_sock_errno;
} esp_mqtt_error_codes_t;

typedef struct esp_mqtt_event_t {
    esp_mqtt_event_id_t event_id;
    esp_mqtt_client_handle_t client;
    char* data;
    int data_len;
    int total_data_len;
    int current_data_offset;
    char* topic;
    int topic_len;
    int msg_id;
    int session_present;
    esp_mqtt_error_codes_t* error_handle;
    bool retain;
    int qos;
    bool dup;
    esp_mqtt_protocol_ver_t protocol_ver;
} esp_mqtt_event_t;

typedef esp_mqtt_event_t* esp_mqtt_event_handle_t;

typedef struct esp_mqtt_client_config_t {
    struct broker_t {
        struct address_t {
            const char* uri;
            const char* hostname;
            esp_mqtt_transport_t transport;
            const char* path;
            uint32_t port;
        } address;
        struct verification_t {
            bool use_global_ca_store;
            esp_err_t (*crt_bundle_attach)(void* conf);
            const char* certificate;
            size_t certificate_len;
            const void* psk_hint_key;
            bool skip_cert_common_name_check;
            const char** alpn_protos;
            const char* common_name;
        } verification;
    } broker;
    struct credentials_t {
        const char* username;
        const char* client_id;
        bool set_null_client_id;
        struct authentication_t {
            const char* password;
            const char* certificate;
            size_t certificate_len;
            const char* key;
            size_t key_len;
        } authentication;
    } credentials;
    struct session_t {
        struct last_will_t {
            const char* topic;
            const char* msg;
            int msg_len;
            int qos;
            int retain;
        } last_will;
        bool disable_clean_session;
        int keepalive;
        bool disable_keepalive;
        esp_mqtt_protocol_ver_t protocol_ver;
        int message_retransmit_timeout;
    } session;
    struct network_t {
        int reconnect_timeout_ms;
        int timeout_ms;
        int refresh_connection_after_ms;
        bool disable_auto_reconnect;
    } network;
    struct task_t {
        int priority;
        int stack_size;
    } task;
    struct buffer_t {
        int size;
        int out_size;
    } buffer;
} esp_mqtt_client_config_t;

esp_mqtt_client_handle_t esp_mqtt_client_init(const esp_mqtt_client_config_t* config);
esp_err_t esp_mqtt_client_register_event(esp_mqtt_client_handle_t client, esp_mqtt_event_id_t event,
                                         esp_event_handler_t event_handler, void* event_handler_arg);
esp_err_t esp_mqtt_client_start(esp_mqtt_client_handle_t client);
esp_err_t esp_mqtt_client_stop(esp_mqtt_client_handle_t client);
esp_err_t esp_mqtt_client_destroy(esp_mqtt_client_handle_t client);
int esp_mqtt_client_publish(esp_mqtt_client_handle_t client, const char* topic, const char* data, int len, int qos,
                            int retain);
int esp_mqtt_client_subscribe_single(esp_mqtt_client_handle_t client, const char* topic, int qos);

// esp-mqtt (IDF 5.1+) declares esp_mqtt_client_subscribe as an overload set in C++.
inline int esp_mqtt_client_subscribe(esp_mqtt_client_handle_t client, const char* topic, int qos) {
    return esp_mqtt_client_subscribe_single(client, topic, qos);
}
