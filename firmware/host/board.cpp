#include "board.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>

namespace vesper::host {
namespace {

constexpr const char* kResetEnv = "VESPER_HOST_RESET_REASON";

std::int64_t monotonic_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

bool slurp(const std::string& path, std::vector<std::uint8_t>& out) {
    std::ifstream file(path, std::ios::binary);
    if (!file) return false;
    out.assign(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
    return true;
}

std::uint32_t le32(const std::uint8_t* p) {
    return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
           static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}

}  // namespace

Board& Board::get() {
    static Board board;
    return board;
}

bool Board::power_on(const BoardOptions& options, std::string& error) {
    options_ = options;
    boot_ns_ = monotonic_ns() - static_cast<std::int64_t>(options.clock_start_ms) * 1000000;
    if (const char* reason = std::getenv(kResetEnv)) {
        reset_reason_ = static_cast<esp_reset_reason_t>(std::atoi(reason));
        unsetenv(kResetEnv);
    }
    fd_ = ::open(options.flash_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ < 0) {
        error = "cannot open the flash " + options.flash_path + ": " + std::strerror(errno);
        return false;
    }
    struct stat st {};
    fstat(fd_, &st);
    if (st.st_size == 0) erase(0, kFlashSize);
    if (!options.table_path.empty()) {
        std::vector<std::uint8_t> table;
        if (!slurp(options.table_path, table) || table.empty() || table.size() > 0x1000) {
            error = "cannot read a partition table from " + options.table_path;
            return false;
        }
        erase(kTableOffset, 0x1000);
        write(kTableOffset, table.data(), table.size());
    }
    if (!load_table(error)) return false;
    auto put = [&](const std::string& path, const esp_partition_t* into, const char* what) {
        if (path.empty()) return true;
        std::vector<std::uint8_t> bytes;
        if (into == nullptr) {
            error = std::string("the partition table has no ") + what + " partition";
            return false;
        }
        if (!slurp(path, bytes) || bytes.size() > into->size) {
            error = "cannot put " + path + " into the " + what + " partition (" + std::to_string(into->size) + " bytes)";
            return false;
        }
        erase(into->address, into->size);
        write(into->address, bytes.data(), bytes.size());
        return true;
    };
    const esp_partition_t* first_app = find(ESP_PARTITION_TYPE_APP, ESP_PARTITION_SUBTYPE_APP_FACTORY);
    if (first_app == nullptr) first_app = find(ESP_PARTITION_TYPE_APP, ESP_PARTITION_SUBTYPE_APP_OTA_0);
    if (!put(options.nvs_path, find(ESP_PARTITION_TYPE_DATA, ESP_PARTITION_SUBTYPE_DATA_NVS), "nvs")) return false;
    if (!options.app_path.empty()) {
        if (!put(options.app_path, first_app, "app")) return false;
        // A freshly flashed board: esptool and the station erase otadata (boot_app0.bin is blank).
        if (const auto* otadata = find(ESP_PARTITION_TYPE_DATA, ESP_PARTITION_SUBTYPE_DATA_OTA)) {
            erase(otadata->address, otadata->size);
        }
    }
    return true;
}

// The table at 0x8000 as ESP-IDF's esp_partition reads it (gen_esp32part.py's format): 32-byte
// entries with magic 0x50AA, type, subtype, offset, size, a 16-byte label and flags, up to an
// MD5 entry (0xEBEB) or erased flash.
bool Board::load_table(std::string& error) {
    const auto table = read(kTableOffset, 0xC00);
    partitions_.clear();
    for (std::size_t at = 0; at + 32 <= table.size(); at += 32) {
        const std::uint8_t* e = table.data() + at;
        if (e[0] != 0xAA || e[1] != 0x50) break;
        esp_partition_t p{};
        p.type = static_cast<esp_partition_type_t>(e[2]);
        p.subtype = static_cast<esp_partition_subtype_t>(e[3]);
        p.address = le32(e + 4);
        p.size = le32(e + 8);
        p.erase_size = 0x1000;
        std::memcpy(p.label, e + 12, 16);
        p.label[16] = 0;
        p.encrypted = (le32(e + 28) & 1) != 0;
        if (static_cast<std::uint64_t>(p.address) + p.size > kFlashSize) {
            error = std::string("partition ") + p.label + " lies outside the 4 MiB flash";
            return false;
        }
        partitions_.push_back(p);
    }
    if (partitions_.empty()) {
        error = "no partition table at 0x8000 (give --table)";
        return false;
    }
    return true;
}

const esp_partition_t* Board::find(esp_partition_type_t type, int subtype) const {
    for (const auto& p : partitions_) {
        if (p.type == type && (subtype == ESP_PARTITION_SUBTYPE_ANY || p.subtype == subtype)) return &p;
    }
    return nullptr;
}

std::vector<std::uint8_t> Board::read(std::uint32_t offset, std::uint32_t len) const {
    std::vector<std::uint8_t> out(len, 0xFF);
    const ssize_t n = ::pread(fd_, out.data(), len, offset);
    (void)n;  // past the end of a short file reads as erased flash
    return out;
}

void Board::write(std::uint32_t offset, const std::uint8_t* data, std::size_t len) {
    // NOR flash: a write can only clear bits (ESP-IDF's esp_flash_write), so AND with what is there.
    auto current = read(offset, static_cast<std::uint32_t>(len));
    for (std::size_t i = 0; i < len; ++i) current[i] &= data[i];
    if (::pwrite(fd_, current.data(), len, offset) != static_cast<ssize_t>(len)) std::abort();
}

void Board::erase(std::uint32_t offset, std::uint32_t len) {
    const std::vector<std::uint8_t> erased(len, 0xFF);
    if (::pwrite(fd_, erased.data(), len, offset) != static_cast<ssize_t>(len)) std::abort();
}

std::int64_t Board::now_us() const { return (monotonic_ns() - boot_ns_) / 1000; }

void Board::restart(esp_reset_reason_t reason) {
    std::fflush(stdout);
    std::fflush(stderr);
    setenv(kResetEnv, std::to_string(static_cast<int>(reason)).c_str(), 1);
    // A reset drops every connection: nothing of this boot is handed to the next one.
    for (int fd = 3; fd < 1024; ++fd) ::close(fd);
    std::vector<char*> argv;
    for (auto& arg : options_.argv) argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    ::execv("/proc/self/exe", argv.data());
    std::perror("vesper-device: restart");
    std::_Exit(1);
}

}  // namespace vesper::host
