#include "messages.h"

#include "json.h"

namespace vesper {

std::string topic_for(std::string_view templ, std::string_view sn) {
    std::string out(templ);
    if (const auto at = out.find("{sn}"); at != std::string::npos) out.replace(at, 4, sn);
    return out;
}

Topics topics_for(const TopicTemplates& t, std::string_view sn) {
    return {topic_for(t.data, sn), topic_for(t.status, sn), topic_for(t.control, sn)};
}

std::string heartbeat_json(std::string_view fw, std::uint64_t uptime_s, const Vitals& vitals) {
    return "{\"type\":\"heartbeat\",\"fw\":" + json_quote(fw) + ",\"uptime\":" + std::to_string(uptime_s) +
           ",\"rssi\":" + std::to_string(vitals.rssi) + ",\"heap_free\":" + std::to_string(vitals.heap_free) +
           ",\"reset_reason\":" + json_quote(vitals.reset_reason) + "}";
}

std::string status_online_json(std::string_view fw) { return "{\"online\":true,\"fw\":" + json_quote(fw) + "}"; }

std::string status_offline_json() { return "{\"online\":false}"; }

Command parse_command(std::string_view payload) {
    const auto object = JsonObject::parse(payload);
    if (!object) return Command::Malformed;
    const auto cmd = object->string("cmd");
    if (cmd == "ota") return Command::Ota;
    if (cmd == "reboot") return Command::Reboot;
    return Command::Unknown;
}

}  // namespace vesper
