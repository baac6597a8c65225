// Host board layer (a stand-in, not ESP-IDF): OTA writes and the rollback states (esp-idf v5.3.2
// components/app_update/include/esp_ota_ops.h:100 esp_ota_begin, :120 write, :159 end, :187
// set_boot_partition, :222 get_running_partition, :237 get_next_update_partition, :286
// mark_app_valid_cancel_rollback, :298 mark_app_invalid_rollback_and_reboot, :318
// get_state_partition; components/bootloader_support/include/esp_flash_partitions.h:51-57
// esp_ota_img_states_t, :66 esp_ota_select_entry_t),
// over the host board's file-backed flash: the image is written into the spare app partition,
// validated at esp_ota_end() like esp_image_verify() (magic, segments, checksum, appended
// SHA-256), and the otadata entries carry the states the bootloader acts on.
#pragma once

#include <cstddef>
#include <cstdint>

#include "esp_app_desc.h"
#include "esp_err.h"
#include "esp_partition.h"

typedef uint32_t esp_ota_handle_t;

typedef enum {
    ESP_OTA_IMG_NEW = 0x0U,
    ESP_OTA_IMG_PENDING_VERIFY = 0x1U,
    ESP_OTA_IMG_VALID = 0x2U,
    ESP_OTA_IMG_INVALID = 0x3U,
    ESP_OTA_IMG_ABORTED = 0x4U,
    ESP_OTA_IMG_UNDEFINED = 0xFFFFFFFFU,
} esp_ota_img_states_t;

#define OTA_SIZE_UNKNOWN 0xffffffff

const esp_partition_t* esp_ota_get_running_partition(void);
const esp_partition_t* esp_ota_get_next_update_partition(const esp_partition_t* start_from);
esp_err_t esp_ota_begin(const esp_partition_t* partition, size_t image_size, esp_ota_handle_t* out_handle);
esp_err_t esp_ota_write(esp_ota_handle_t handle, const void* data, size_t size);
esp_err_t esp_ota_end(esp_ota_handle_t handle);
esp_err_t esp_ota_abort(esp_ota_handle_t handle);
esp_err_t esp_ota_set_boot_partition(const esp_partition_t* partition);
esp_err_t esp_ota_get_state_partition(const esp_partition_t* partition, esp_ota_img_states_t* ota_state);
esp_err_t esp_ota_mark_app_valid_cancel_rollback(void);
esp_err_t esp_ota_mark_app_invalid_rollback_and_reboot(void);
