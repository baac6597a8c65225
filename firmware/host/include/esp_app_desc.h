// Host board layer (a stand-in, not ESP-IDF): the running app's description (esp-idf v5.3.2
// components/esp_app_format/include/esp_app_desc.h:26-39 esp_app_desc_t, :52 esp_app_get_description), read from the image the host bootloader
// booted, as ESP-IDF reads it from the app's own flash mapping.
#pragma once

#include <cstdint>

typedef struct {
    uint32_t magic_word;
    uint32_t secure_version;
    uint32_t reserv1[2];
    char version[32];
    char project_name[32];
    char time[16];
    char date[16];
    char idf_ver[32];
    uint8_t app_elf_sha256[32];
    uint32_t reserv2[20];
} esp_app_desc_t;

static_assert(sizeof(esp_app_desc_t) == 256, "esp_app_desc_t is 256 bytes");

const esp_app_desc_t* esp_app_get_description(void);
