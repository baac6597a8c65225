//! How long a real SPI NOR flash chip takes to erase and program, so that flashing a simulated
//! board costs what flashing a real one does (and a flasher cannot look fast by writing to RAM).
//!
//! Figures: Winbond W25Q32JV datasheet (the 4 MB part of ESP32-WROOM-32 modules), revision I,
//! section 9.6 "AC Electrical Characteristics", typical values: tSE 4 KB sector erase 45 ms,
//! tBE2 64 KB block erase 150 ms, tPP page program (256 bytes) 0.4 ms, tCE chip erase 10 s.
//! Erases use 64 KB blocks where a region covers them whole, 4 KB sectors elsewhere, as the ROM's
//! `SPIEraseArea` and the flasher stub do.

use std::time::Duration;

const SECTOR: usize = 4096;
const BLOCK: usize = 64 * 1024;
const PAGE: usize = 256;

/// Erase and program times of one flash chip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlashTiming {
    pub sector_erase: Duration,
    pub block_erase: Duration,
    pub page_program: Duration,
    pub chip_erase: Duration,
}

impl FlashTiming {
    /// Winbond W25Q32JV, typical values.
    pub const W25Q32JV: FlashTiming = FlashTiming {
        sector_erase: Duration::from_millis(45),
        block_erase: Duration::from_millis(150),
        page_program: Duration::from_micros(400),
        chip_erase: Duration::from_secs(10),
    };

    /// Erasing `len` bytes from `offset` (sector aligned): whole 64 KB blocks, then sectors.
    pub fn erase(&self, offset: usize, len: usize) -> Duration {
        let end = offset + len.div_ceil(SECTOR) * SECTOR;
        let mut at = offset;
        let mut time = Duration::ZERO;
        while at < end {
            if at % BLOCK == 0 && at + BLOCK <= end {
                time += self.block_erase;
                at += BLOCK;
            } else {
                time += self.sector_erase;
                at += SECTOR;
            }
        }
        time
    }

    /// Programming `bytes` bytes: one page program per 256 bytes (or part).
    pub fn program(&self, bytes: usize) -> Duration {
        self.page_program * bytes.div_ceil(PAGE) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erases_use_blocks_where_they_fit_and_pages_cost_each() {
        let t = FlashTiming::W25Q32JV;
        // 0x10000..0x30000: two whole blocks.
        assert_eq!(t.erase(0x10000, 0x20000), Duration::from_millis(300));
        // 0x9000..0xF000 (the NVS partition): six sectors, no whole block.
        assert_eq!(t.erase(0x9000, 0x6000), Duration::from_millis(270));
        // 0xF000..0x21000: a sector, a block, a sector.
        assert_eq!(t.erase(0xF000, 0x12000), Duration::from_millis(240));
        assert_eq!(t.program(256), Duration::from_micros(400));
        assert_eq!(t.program(257), Duration::from_micros(800));
        assert_eq!(t.program(900 * 1024), Duration::from_micros(400 * 3600));
    }
}
