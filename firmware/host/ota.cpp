// The host board's app partitions: the bootloader's choice of app with the rollback states, the
// OTA write API and the running app's description. Follows esp-idf v5.3.2 (the ESP-IDF of the pinned Arduino-ESP32 3.1.1):
// - components/bootloader_support/src/bootloader_utility.c:322
//   bootloader_utility_get_selected_boot_partition(): entries still PENDING_VERIFY at boot become
//   ABORTED (:344, the image had its chance); the valid entry with the highest sequence number
//   chooses slot (seq - 1) % ota_count (:386-387); a NEW entry becomes PENDING_VERIFY as it
//   boots (:390-393); with no valid entry, factory, else ota_0, and set_actual_ota_seq() (:434)
//   then records ota_0 as VALID;
// - components/bootloader_support/src/bootloader_common_loader.c (:34 ota_select_crc; :39
//   ota_select_invalid: no sequence, INVALID or ABORTED; :44 ota_select_valid: not invalid and
//   the CRC holds);
// - components/app_update/esp_ota_ops.c (:114 esp_ota_begin, :174 write, :319 end, :390
//   esp_rewrite_ota_data, :742 esp_ota_current_ota_is_workable, :686
//   esp_ota_check_rollback_is_possible, :837 esp_ota_get_state_partition);
// - components/bootloader_support/src/esp_image_format.c:292 (esp_image_verify: magic, segments,
//   checksum, appended SHA-256), the format esptool documents.
#include <esp_app_desc.h>
#include <esp_ota_ops.h>

#include <cstdio>
#include <cstring>
#include <set>

#include "board.h"
#include "nvs_image.h"
#include "sha256.h"

using vesper::host::Board;

namespace {

constexpr std::uint32_t kSector = 0x1000;
constexpr std::uint32_t kUnset = 0xFFFFFFFF;

// esp_ota_select_entry_t (esp_flash_partitions.h): one per otadata sector.
struct OtaEntry {
    std::uint32_t seq = kUnset;
    std::uint8_t label[20];
    std::uint32_t state = kUnset;
    std::uint32_t crc = kUnset;
};
static_assert(sizeof(OtaEntry) == 32, "esp_ota_select_entry_t is 32 bytes");

std::uint32_t entry_crc(const OtaEntry& e) {
    return vesper::host::nvs_crc32(reinterpret_cast<const std::uint8_t*>(&e.seq), 4);
}
// bootloader_common.c: ota_select_invalid (no sequence, or a state that must not boot) and
// ota_select_valid (not invalid, and its CRC holds).
bool entry_invalid(const OtaEntry& e) {
    return e.seq == kUnset || e.state == ESP_OTA_IMG_INVALID || e.state == ESP_OTA_IMG_ABORTED;
}
bool entry_crc_ok(const OtaEntry& e) { return e.crc == entry_crc(e); }
bool entry_valid(const OtaEntry& e) { return !entry_invalid(e) && entry_crc_ok(e); }

const esp_partition_t* otadata() { return Board::get().find(ESP_PARTITION_TYPE_DATA, ESP_PARTITION_SUBTYPE_DATA_OTA); }

int ota_count() {
    int n = 0;
    for (const auto& p : Board::get().partitions()) {
        if (p.type == ESP_PARTITION_TYPE_APP && p.subtype >= ESP_PARTITION_SUBTYPE_APP_OTA_MIN &&
            p.subtype < ESP_PARTITION_SUBTYPE_APP_OTA_MAX) {
            ++n;
        }
    }
    return n;
}

void read_entries(OtaEntry (&two)[2]) {
    const auto* data = otadata();
    for (int i = 0; i < 2; ++i) {
        const auto bytes = Board::get().read(data->address + kSector * i, sizeof(OtaEntry));
        std::memcpy(&two[i], bytes.data(), sizeof(OtaEntry));
    }
}

void write_entry(OtaEntry (&two)[2], int index) {
    two[index].crc = entry_crc(two[index]);
    const auto* data = otadata();
    Board::get().erase(data->address + kSector * index, kSector);
    Board::get().write(data->address + kSector * index, reinterpret_cast<const std::uint8_t*>(&two[index]),
                       sizeof(OtaEntry));
}

// bootloader_common_get_active_otadata: the valid entry with the highest sequence number.
int active_entry(const OtaEntry (&two)[2]) {
    const bool ok[2] = {entry_valid(two[0]), entry_valid(two[1])};
    if (ok[0] && ok[1]) return two[0].seq >= two[1].seq ? 0 : 1;
    if (ok[0]) return 0;
    if (ok[1]) return 1;
    return -1;
}

const esp_partition_t* ota_slot(std::uint32_t seq) {
    const int slot = static_cast<int>((seq - 1) % static_cast<std::uint32_t>(ota_count()));
    return Board::get().find(ESP_PARTITION_TYPE_APP, ESP_PARTITION_SUBTYPE_APP_OTA_MIN + slot);
}

bool is_ota(const esp_partition_t* p) {
    return p != nullptr && p->type == ESP_PARTITION_TYPE_APP && p->subtype >= ESP_PARTITION_SUBTYPE_APP_OTA_MIN &&
           p->subtype < ESP_PARTITION_SUBTYPE_APP_OTA_MAX;
}

// esp_image_verify on an image in memory: its length, or 0 when it is not a valid app.
std::size_t verified_length(const std::vector<std::uint8_t>& image) {
    if (image.size() < 24 || image[0] != 0xE9 || image[1] == 0 || image[1] > 16) return 0;
    std::size_t at = 24;
    std::uint8_t checksum = 0xEF;
    for (int segment = 0; segment < image[1]; ++segment) {
        if (at + 8 > image.size()) return 0;
        const std::uint32_t len = image[at + 4] | image[at + 5] << 8 | image[at + 6] << 16 |
                                  static_cast<std::uint32_t>(image[at + 7]) << 24;
        at += 8;
        if (len > image.size() - at) return 0;
        for (std::size_t i = 0; i < len; ++i) checksum ^= image[at + i];
        at += len;
    }
    const std::size_t checksum_at = ((at + 1 + 15) / 16) * 16 - 1;
    if (checksum_at >= image.size() || image[checksum_at] != checksum) return 0;
    std::size_t end = checksum_at + 1;
    if (image[23] == 1) {  // hash_appended
        if (end + 32 > image.size()) return 0;
        vesper::Sha256 hash;
        hash.update(image.data(), end);
        const auto digest = hash.finish();
        if (std::memcmp(digest.data(), image.data() + end, 32) != 0) return 0;
        end += 32;
    }
    return end;
}

// Partitions whose image was verified since they were last written: a boot and the first
// esp_ota_set_boot_partition() of the same app need not hash it twice.
std::set<std::uint32_t> g_verified;

bool bootable(const esp_partition_t* p) {
    if (p == nullptr) return false;
    if (g_verified.count(p->address) != 0) return true;
    const bool ok = verified_length(Board::get().read(p->address, p->size)) != 0;
    if (ok) g_verified.insert(p->address);
    return ok;
}

const esp_partition_t* g_running = nullptr;
esp_app_desc_t g_description{};

struct Writing {
    const esp_partition_t* partition = nullptr;
    std::uint32_t written = 0;
    bool open = false;
} g_writing;

esp_err_t rewrite_for(const esp_partition_t* partition, std::uint32_t state) {
    OtaEntry two[2];
    read_entries(two);
    const std::uint32_t count = static_cast<std::uint32_t>(ota_count());
    const std::uint32_t sub = static_cast<std::uint32_t>(partition->subtype - ESP_PARTITION_SUBTYPE_APP_OTA_MIN);
    const int active = active_entry(two);
    int next = 0;
    std::uint32_t seq = sub + 1;
    if (active != -1) {
        std::uint32_t i = 0;
        while (two[active].seq > (sub + 1) % count + i * count) ++i;
        seq = (sub + 1) % count + i * count;
        next = active ^ 1;
    }
    two[next].seq = seq;
    std::memset(two[next].label, 0xFF, sizeof two[next].label);
    two[next].state = state;
    write_entry(two, next);
    return ESP_OK;
}

}  // namespace

namespace vesper::host {

std::optional<const esp_partition_t*> boot_select(std::string& error) {
    auto& board = Board::get();
    const esp_partition_t* factory = board.find(ESP_PARTITION_TYPE_APP, ESP_PARTITION_SUBTYPE_APP_FACTORY);
    const esp_partition_t* chosen = nullptr;
    bool initial_otadata = false;  // ota_has_initial_contents
    if (otadata() != nullptr && ota_count() > 0) {
        OtaEntry two[2];
        read_entries(two);
        for (int i = 0; i < 2; ++i) {
            if (two[i].state == ESP_OTA_IMG_PENDING_VERIFY) {
                std::printf("I (0) boot: otadata[%d] was not confirmed: marked ABORTED\r\n", i);
                two[i].state = ESP_OTA_IMG_ABORTED;
                write_entry(two, i);
            }
        }
        if (entry_invalid(two[0]) && entry_invalid(two[1])) {
            initial_otadata = factory == nullptr && (two[0].seq == kUnset || !entry_crc_ok(two[0])) &&
                              (two[1].seq == kUnset || !entry_crc_ok(two[1]));
        } else if (const int active = active_entry(two); active != -1) {
            chosen = ota_slot(two[active].seq);
            if (two[active].state == ESP_OTA_IMG_NEW) {
                two[active].state = ESP_OTA_IMG_PENDING_VERIFY;
                write_entry(two, active);
            }
        }
    }
    if (chosen == nullptr) {
        chosen = factory != nullptr ? factory : board.find(ESP_PARTITION_TYPE_APP, ESP_PARTITION_SUBTYPE_APP_OTA_0);
    }
    if (!bootable(chosen)) {
        error = "E (0) boot: No bootable app partitions in the partition table";
        return std::nullopt;
    }
    if (initial_otadata && is_ota(chosen)) {
        // set_actual_ota_seq: a fresh board without a factory app records the slot it booted.
        OtaEntry two[2];
        read_entries(two);
        two[0] = OtaEntry{};
        std::memset(two[0].label, 0xFF, sizeof two[0].label);
        two[0].seq = static_cast<std::uint32_t>(chosen->subtype - ESP_PARTITION_SUBTYPE_APP_OTA_MIN) + 1;
        two[0].state = ESP_OTA_IMG_VALID;
        write_entry(two, 0);
        std::printf("I (0) boot: Set actual ota_seq=%u in otadata[0]\r\n", two[0].seq);
    }
    std::printf("I (0) boot: Loaded app from partition at offset 0x%x\r\n", chosen->address);
    return chosen;
}

void load_app_description(const esp_partition_t* running) {
    g_running = running;
    const auto bytes = Board::get().read(running->address + 32, sizeof g_description);
    std::memcpy(&g_description, bytes.data(), sizeof g_description);
    g_description.version[31] = 0;
    g_description.project_name[31] = 0;
}

}  // namespace vesper::host

const esp_app_desc_t* esp_app_get_description(void) { return &g_description; }

const esp_partition_t* esp_ota_get_running_partition(void) { return g_running; }

const esp_partition_t* esp_ota_get_next_update_partition(const esp_partition_t* start_from) {
    if (start_from == nullptr) start_from = g_running;
    const int count = ota_count();
    if (count == 0) return nullptr;
    int slot = is_ota(start_from) ? start_from->subtype - ESP_PARTITION_SUBTYPE_APP_OTA_MIN : -1;
    for (int i = 0; i < count; ++i) {
        slot = (slot + 1) % count;
        const auto* p = Board::get().find(ESP_PARTITION_TYPE_APP, ESP_PARTITION_SUBTYPE_APP_OTA_MIN + slot);
        if (p != nullptr && p != g_running) return p;
    }
    return nullptr;
}

esp_err_t esp_ota_begin(const esp_partition_t* partition, size_t image_size, esp_ota_handle_t* out_handle) {
    if (!is_ota(partition) || out_handle == nullptr) return ESP_ERR_INVALID_ARG;
    if (partition == g_running) return ESP_ERR_OTA_PARTITION_CONFLICT;
    if (image_size != OTA_SIZE_UNKNOWN && image_size > partition->size) return ESP_ERR_INVALID_SIZE;
    const std::uint32_t erase = image_size == OTA_SIZE_UNKNOWN
                                    ? partition->size
                                    : static_cast<std::uint32_t>((image_size + kSector - 1) / kSector * kSector);
    Board::get().erase(partition->address, erase);
    g_verified.erase(partition->address);
    g_writing = {partition, 0, true};
    *out_handle = 1;
    return ESP_OK;
}

esp_err_t esp_ota_write(esp_ota_handle_t handle, const void* data, size_t size) {
    if (handle != 1 || !g_writing.open) return ESP_ERR_INVALID_ARG;
    if (g_writing.written + size > g_writing.partition->size) return ESP_ERR_INVALID_SIZE;
    // The first byte must be the image magic (esp_ota_write: ESP_ERR_OTA_VALIDATE_FAILED).
    if (g_writing.written == 0 && size > 0 && static_cast<const std::uint8_t*>(data)[0] != 0xE9) {
        return ESP_ERR_OTA_VALIDATE_FAILED;
    }
    Board::get().write(g_writing.partition->address + g_writing.written, static_cast<const std::uint8_t*>(data), size);
    g_writing.written += static_cast<std::uint32_t>(size);
    return ESP_OK;
}

esp_err_t esp_ota_end(esp_ota_handle_t handle) {
    if (handle != 1 || !g_writing.open) return ESP_ERR_NOT_FOUND;
    g_writing.open = false;
    return bootable(g_writing.partition) ? ESP_OK : ESP_ERR_OTA_VALIDATE_FAILED;
}

esp_err_t esp_ota_abort(esp_ota_handle_t handle) {
    if (handle != 1 || !g_writing.open) return ESP_ERR_NOT_FOUND;
    g_writing.open = false;
    return ESP_OK;
}

esp_err_t esp_ota_set_boot_partition(const esp_partition_t* partition) {
    if (partition == nullptr || partition->type != ESP_PARTITION_TYPE_APP) return ESP_ERR_INVALID_ARG;
    if (!bootable(partition)) return ESP_ERR_OTA_VALIDATE_FAILED;
    if (partition->subtype == ESP_PARTITION_SUBTYPE_APP_FACTORY) {
        Board::get().erase(otadata()->address, otadata()->size);
        return ESP_OK;
    }
    // CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE: a new entry starts as NEW (set_new_state_otadata).
    return rewrite_for(partition, ESP_OTA_IMG_NEW);
}

esp_err_t esp_ota_get_state_partition(const esp_partition_t* partition, esp_ota_img_states_t* ota_state) {
    if (partition == nullptr || ota_state == nullptr) return ESP_ERR_INVALID_ARG;
    if (!is_ota(partition)) return ESP_ERR_NOT_SUPPORTED;
    OtaEntry two[2];
    read_entries(two);
    const std::uint32_t slot = static_cast<std::uint32_t>(partition->subtype - ESP_PARTITION_SUBTYPE_APP_OTA_MIN);
    for (const auto& e : two) {
        if (entry_crc_ok(e) && (e.seq - 1) % static_cast<std::uint32_t>(ota_count()) == slot) {
            *ota_state = static_cast<esp_ota_img_states_t>(e.state);
            return ESP_OK;
        }
    }
    return ESP_ERR_NOT_FOUND;
}

esp_err_t esp_ota_mark_app_valid_cancel_rollback(void) {
    OtaEntry two[2];
    read_entries(two);
    const int active = active_entry(two);
    if (active == -1) return ESP_FAIL;  // "Running firmware is factory"
    if (two[active].state != ESP_OTA_IMG_VALID) {
        two[active].state = ESP_OTA_IMG_VALID;
        write_entry(two, active);
    }
    return ESP_OK;
}

esp_err_t esp_ota_mark_app_invalid_rollback_and_reboot(void) {
    OtaEntry two[2];
    read_entries(two);
    const int active = active_entry(two);
    if (active == -1) return ESP_FAIL;
    // esp_ota_check_rollback_is_possible: the other entry names a bootable app (or a factory app).
    const OtaEntry& last = two[active ^ 1];
    const esp_partition_t* factory = Board::get().find(ESP_PARTITION_TYPE_APP, ESP_PARTITION_SUBTYPE_APP_FACTORY);
    const bool possible = entry_valid(last) ? bootable(ota_slot(last.seq)) : bootable(factory);
    if (!possible) return ESP_ERR_OTA_ROLLBACK_FAILED;
    two[active].state = ESP_OTA_IMG_INVALID;
    write_entry(two, active);
    std::printf("I (%lld) esp_ota_ops: Rollback to previously worked partition. Restart.\r\n",
                static_cast<long long>(Board::get().now_us() / 1000));
    Board::get().restart(ESP_RST_SW);
}
