//! The ESP32 serial bootloader protocol, as the ROM and then the flasher stub speak it, without
//! any I/O: a frame in, actions out. This is what makes the simulated board faithful: espflash
//! and esptool talk to it exactly as to a real ESP32 (register reads for chip detection, MAC and
//! flash ID; flash begin/data/end, compressed or not; MD5 verification; stub upload; baud change).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use md5::{Digest as _, Md5};

use super::Fault;
use crate::timing::FlashTiming;

/// Request and response opcodes.
pub mod op {
    pub const FLASH_BEGIN: u8 = 0x02;
    pub const FLASH_DATA: u8 = 0x03;
    pub const FLASH_END: u8 = 0x04;
    pub const MEM_BEGIN: u8 = 0x05;
    pub const MEM_END: u8 = 0x06;
    pub const MEM_DATA: u8 = 0x07;
    pub const SYNC: u8 = 0x08;
    pub const WRITE_REG: u8 = 0x09;
    pub const READ_REG: u8 = 0x0A;
    pub const SPI_SET_PARAMS: u8 = 0x0B;
    pub const SPI_ATTACH: u8 = 0x0D;
    pub const CHANGE_BAUDRATE: u8 = 0x0F;
    pub const FLASH_DEFL_BEGIN: u8 = 0x10;
    pub const FLASH_DEFL_DATA: u8 = 0x11;
    pub const FLASH_DEFL_END: u8 = 0x12;
    pub const SPI_FLASH_MD5: u8 = 0x13;
    pub const GET_SECURITY_INFO: u8 = 0x14;
    pub const ERASE_FLASH: u8 = 0xD0;
    pub const ERASE_REGION: u8 = 0xD1;
    pub const READ_FLASH: u8 = 0xD2;
    pub const RUN_USER_CODE: u8 = 0xD3;
}

/// ROM error codes (the second status byte).
mod error {
    pub const INVALID_MESSAGE: u8 = 0x05;
    pub const FAILED: u8 = 0x06;
    pub const BAD_CHECKSUM: u8 = 0x07;
    pub const FLASH_WRITE: u8 = 0x08;
    pub const DEFLATE: u8 = 0x0B;
}

/// Register the host reads to identify the chip: this value means ESP32.
pub const CHIP_MAGIC_REG: u32 = 0x4000_1000;
pub const ESP32_MAGIC: u32 = 0x00F0_1D83;
const EFUSE_BLOCK0: u32 = 0x3FF5_A000;
const APB_CTL_DATE: u32 = 0x3FF6_607C;
const UART_CLKDIV: u32 = 0x3FF4_0014;
const SPI_BASE: u32 = 0x3FF4_2000;
const SPI_W0: u32 = SPI_BASE + 0x80;
const SPI_CMD: u32 = SPI_BASE;
const SPI_CMD_USR: u32 = 1 << 18;
const SECTOR: usize = 4096;

/// What the serial side must do after a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this frame (SLIP-encoded by the caller).
    Send(Vec<u8>),
    /// Switch the line to a new baud rate (after sending the reply at the old one).
    ChangeBaud(u32),
    /// Leave the bootloader and run what is in flash.
    Reboot,
    /// The board is pulled out: the port goes away.
    Unplug,
}

/// A flash write in progress.
struct Write {
    offset: usize,
    block_size: usize,
    /// Next byte to write (compressed writes are sequential).
    cursor: usize,
    inflater: Option<flate2::Decompress>,
}

/// The board's bootloader state and memory.
pub struct Rom {
    pub flash: Vec<u8>,
    mac: [u8; 6],
    regs: HashMap<u32, u32>,
    /// Running the flasher stub (2 status bytes, compressed writes, stub-only commands).
    pub stub: bool,
    write: Option<Write>,
    ram_entry: Option<u32>,
    faults: Vec<Fault>,
    fired: HashSet<Fault>,
    data_blocks: u32,
    /// Flash was written since the last boot.
    pub dirty: bool,
    /// How long the flash chip takes to erase and program; `None`: no time at all.
    pub timing: Option<FlashTiming>,
    /// When the chip finishes the work it has been given (the stub lets it work while the
    /// next block arrives).
    chip_free_at: Option<Instant>,
    /// How long the answer to the command being handled waits for the chip.
    hold: Duration,
}

impl Rom {
    pub fn new(flash_size: usize, mac: [u8; 6], faults: Vec<Fault>) -> Self {
        let mut regs = HashMap::new();
        regs.insert(CHIP_MAGIC_REG, ESP32_MAGIC);
        // eFuse block 0: MAC in words 1-2; revision bits in words 3 and 5 (with APB_CTL_DATE
        // bit 31 this reads as ESP32 revision v3.0).
        regs.insert(
            EFUSE_BLOCK0 + 4,
            u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]),
        );
        regs.insert(
            EFUSE_BLOCK0 + 8,
            u32::from(u16::from_be_bytes([mac[0], mac[1]])),
        );
        regs.insert(EFUSE_BLOCK0 + 12, 1 << 15);
        regs.insert(EFUSE_BLOCK0 + 20, 1 << 20);
        regs.insert(APB_CTL_DATE, 1 << 31);
        // 40 MHz crystal at 115200 baud.
        regs.insert(UART_CLKDIV, 40_000_000 / 115_200);
        Self {
            flash: vec![0xFF; flash_size],
            mac,
            regs,
            stub: false,
            write: None,
            ram_entry: None,
            faults,
            fired: HashSet::new(),
            data_blocks: 0,
            dirty: false,
            timing: None,
            chip_free_at: None,
            hold: Duration::ZERO,
        }
    }

    /// How long the answers to the last command must wait for the flash chip (then zero).
    pub fn take_hold(&mut self) -> Duration {
        std::mem::take(&mut self.hold)
    }

    /// The chip erases or programs for `work`. The ROM loader answers once the chip is done;
    /// the stub answers at once and lets the chip work while the next block arrives, but waits
    /// for the chip before taking more work.
    fn chip_works(&mut self, work: Duration) {
        if work.is_zero() {
            return;
        }
        if !self.stub {
            self.hold += work;
            return;
        }
        self.wait_for_chip();
        let now = Instant::now() + self.hold;
        self.chip_free_at = Some(now + work);
    }

    /// The answer waits until the chip has finished what it was given.
    fn wait_for_chip(&mut self) {
        if let Some(free) = self.chip_free_at.take() {
            let now = Instant::now() + self.hold;
            self.hold += free.saturating_duration_since(now);
        }
    }

    fn erase_time(&self, offset: usize, len: usize) -> Duration {
        self.timing.map_or(Duration::ZERO, |t| t.erase(offset, len))
    }

    fn program_time(&self, bytes: usize) -> Duration {
        self.timing.map_or(Duration::ZERO, |t| t.program(bytes))
    }

    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Back in the ROM after a reset: the stub is gone.
    pub fn reset(&mut self) {
        self.stub = false;
        self.write = None;
        self.ram_entry = None;
    }

    /// Whether a transient fault applies now (each fires once, so a retry succeeds).
    fn fires(&mut self, fault: Fault) -> bool {
        if self.faults.contains(&fault) && !self.fired.contains(&fault) {
            self.fired.insert(fault);
            return true;
        }
        false
    }

    pub fn has_fault(&self, fault: Fault) -> bool {
        self.faults.contains(&fault)
    }

    /// A reply frame: header, data, status bytes (4 from the ESP32 ROM, 2 from the stub).
    fn reply(&self, opcode: u8, value: u32, data: &[u8], status: u8, error: u8) -> Action {
        let status_bytes: &[u8] = if self.stub {
            &[status, error]
        } else {
            &[status, error, 0, 0]
        };
        let len = (data.len() + status_bytes.len()) as u16;
        let mut frame = Vec::with_capacity(8 + len as usize);
        frame.push(0x01);
        frame.push(opcode);
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(&value.to_le_bytes());
        frame.extend_from_slice(data);
        frame.extend_from_slice(status_bytes);
        Action::Send(frame)
    }

    fn ok(&self, opcode: u8) -> Action {
        self.reply(opcode, 0, &[], 0, 0)
    }

    fn fail(&self, opcode: u8, error: u8) -> Action {
        self.reply(opcode, 0, &[], 1, error)
    }

    /// Handles one decoded request frame.
    pub fn handle(&mut self, frame: &[u8]) -> Vec<Action> {
        if frame.len() < 8 || frame[0] != 0x00 {
            return Vec::new();
        }
        let opcode = frame[1];
        let len = u16::from_le_bytes([frame[2], frame[3]]) as usize;
        let checksum = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let data = &frame[8..];
        if data.len() < len {
            return vec![self.fail(opcode, error::INVALID_MESSAGE)];
        }
        let data = &data[..len];
        let word = |i: usize| {
            data.get(i * 4..i * 4 + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        match opcode {
            op::SYNC => {
                if self.has_fault(Fault::NoSync) {
                    return Vec::new();
                }
                // The ROM answers eight times with a non-zero value; the stub once with 0 (esptool
                // tells them apart this way).
                let (count, value) = if self.stub { (1, 0) } else { (8, 0x2012_0707) };
                (0..count)
                    .map(|_| self.reply(op::SYNC, value, &[], 0, 0))
                    .collect()
            }
            op::READ_REG => match word(0) {
                Some(addr) => vec![self.reply(op::READ_REG, self.read_reg(addr), &[], 0, 0)],
                None => vec![self.fail(opcode, error::INVALID_MESSAGE)],
            },
            op::WRITE_REG => match (word(0), word(1), word(2)) {
                (Some(addr), Some(value), mask) => {
                    let mask = mask.unwrap_or(u32::MAX);
                    let old = self.regs.get(&addr).copied().unwrap_or(0);
                    let mut new = (old & !mask) | (value & mask);
                    if addr == SPI_CMD {
                        // The SPI transaction (USR bit) completes at once.
                        new &= !SPI_CMD_USR;
                    }
                    self.regs.insert(addr, new);
                    vec![self.ok(op::WRITE_REG)]
                }
                _ => vec![self.fail(opcode, error::INVALID_MESSAGE)],
            },
            op::SPI_ATTACH | op::SPI_SET_PARAMS => vec![self.ok(opcode)],
            // The ESP32 ROM predates this command: it answers with a failure and the host falls back.
            op::GET_SECURITY_INFO => vec![self.fail(opcode, error::INVALID_MESSAGE)],
            op::CHANGE_BAUDRATE => match word(0) {
                Some(baud) if baud > 0 => vec![self.ok(opcode), Action::ChangeBaud(baud)],
                _ => vec![self.fail(opcode, error::INVALID_MESSAGE)],
            },
            op::MEM_BEGIN => {
                self.ram_entry = None;
                vec![self.ok(opcode)]
            }
            op::MEM_DATA => {
                if data.len() < 16 || checksum != xor_checksum(&data[16..]) {
                    return vec![self.fail(opcode, error::BAD_CHECKSUM)];
                }
                vec![self.ok(opcode)]
            }
            op::MEM_END => {
                let entry = word(1).unwrap_or(0);
                self.ram_entry = Some(entry);
                let mut out = vec![self.ok(opcode)];
                if word(0) == Some(0) && entry != 0 {
                    // The uploaded stub starts and greets the host.
                    self.stub = true;
                    out.push(Action::Send(b"OHAI".to_vec()));
                }
                out
            }
            op::FLASH_BEGIN | op::FLASH_DEFL_BEGIN => self.begin(opcode, data),
            op::FLASH_DATA | op::FLASH_DEFL_DATA => self.data(opcode, checksum, data),
            op::FLASH_END | op::FLASH_DEFL_END => {
                self.write = None;
                self.wait_for_chip();
                let mut out = vec![self.ok(opcode)];
                // FLASH_END's flag is 0 to reboot (the stub ignores reboot requests).
                if opcode == op::FLASH_END && !self.stub && word(0) == Some(0) {
                    out.push(Action::Reboot);
                }
                out
            }
            op::SPI_FLASH_MD5 => match (word(0), word(1)) {
                (Some(addr), Some(size)) => self.md5(addr as usize, size as usize),
                _ => vec![self.fail(opcode, error::INVALID_MESSAGE)],
            },
            op::ERASE_FLASH if self.stub => {
                self.flash.fill(0xFF);
                self.dirty = true;
                self.chip_works(self.timing.map_or(Duration::ZERO, |t| t.chip_erase));
                self.wait_for_chip();
                vec![self.ok(opcode)]
            }
            op::ERASE_REGION if self.stub => match (word(0), word(1)) {
                (Some(addr), Some(size))
                    if (addr as usize).saturating_add(size as usize) <= self.flash.len() =>
                {
                    self.flash[addr as usize..(addr + size) as usize].fill(0xFF);
                    self.dirty = true;
                    self.chip_works(self.erase_time(addr as usize, size as usize));
                    self.wait_for_chip();
                    vec![self.ok(opcode)]
                }
                _ => vec![self.fail(opcode, error::FAILED)],
            },
            op::RUN_USER_CODE if self.stub => vec![Action::Reboot],
            _ => vec![self.fail(opcode, error::INVALID_MESSAGE)],
        }
    }

    fn read_reg(&self, addr: u32) -> u32 {
        if addr == SPI_W0 {
            // JEDEC ID of a Winbond flash of this size: manufacturer 0xEF, type 0x40, size log2.
            let size_id = self.flash.len().trailing_zeros();
            return (size_id << 16) | 0x40EF;
        }
        self.regs.get(&addr).copied().unwrap_or(0)
    }

    fn begin(&mut self, opcode: u8, data: &[u8]) -> Vec<Action> {
        let words: Vec<u32> = data
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let [size, _blocks, block_size, offset, ..] = words[..] else {
            return vec![self.fail(opcode, error::INVALID_MESSAGE)];
        };
        let (size, offset, block_size) = (size as usize, offset as usize, block_size as usize);
        let erase_end = (offset + size).div_ceil(SECTOR) * SECTOR;
        if block_size == 0 || offset % SECTOR != 0 || erase_end > self.flash.len() {
            return vec![self.fail(opcode, error::FAILED)];
        }
        self.flash[offset..erase_end].fill(0xFF);
        self.dirty = true;
        self.chip_works(self.erase_time(offset, erase_end - offset));
        let inflater = (opcode == op::FLASH_DEFL_BEGIN).then(|| flate2::Decompress::new(true));
        self.write = Some(Write {
            offset,
            block_size,
            cursor: offset,
            inflater,
        });
        vec![self.ok(opcode)]
    }

    fn data(&mut self, opcode: u8, checksum: u32, data: &[u8]) -> Vec<Action> {
        if data.len() < 16 {
            return vec![self.fail(opcode, error::INVALID_MESSAGE)];
        }
        let size = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
        let seq = u32::from_le_bytes([data[4], data[5], data[6], data[7]]) as usize;
        let payload = &data[16..];
        if payload.len() != size || checksum != xor_checksum(payload) {
            return vec![self.fail(opcode, error::BAD_CHECKSUM)];
        }
        self.data_blocks += 1;
        if self.faults.contains(&Fault::Unplug(self.data_blocks)) {
            return vec![Action::Unplug];
        }
        if self.fires(Fault::WriteError(self.data_blocks)) {
            return vec![self.fail(opcode, error::FLASH_WRITE)];
        }
        let flash_len = self.flash.len();
        let Some(write) = self.write.as_mut() else {
            return vec![self.fail(opcode, error::FAILED)];
        };
        let mut written = 0;
        match write.inflater.as_mut() {
            None => {
                let at = write.offset + seq * write.block_size;
                if at + payload.len() > flash_len {
                    return vec![self.fail(opcode, error::FLASH_WRITE)];
                }
                self.flash[at..at + payload.len()].copy_from_slice(payload);
                written = payload.len();
            }
            Some(inflater) => {
                let mut input = payload;
                loop {
                    let mut out = vec![0u8; 64 * 1024];
                    let before_in = inflater.total_in();
                    let before_out = inflater.total_out();
                    if inflater
                        .decompress(input, &mut out, flate2::FlushDecompress::None)
                        .is_err()
                    {
                        return vec![self.fail(opcode, error::DEFLATE)];
                    }
                    let consumed = (inflater.total_in() - before_in) as usize;
                    let produced = (inflater.total_out() - before_out) as usize;
                    if write.cursor + produced > flash_len {
                        return vec![self.fail(opcode, error::FLASH_WRITE)];
                    }
                    self.flash[write.cursor..write.cursor + produced]
                        .copy_from_slice(&out[..produced]);
                    write.cursor += produced;
                    written += produced;
                    input = &input[consumed..];
                    if input.is_empty() && produced < out.len() {
                        break;
                    }
                    if consumed == 0 && produced == 0 {
                        break;
                    }
                }
            }
        }
        self.chip_works(self.program_time(written));
        vec![self.ok(opcode)]
    }

    fn md5(&mut self, addr: usize, size: usize) -> Vec<Action> {
        self.wait_for_chip();
        if addr.saturating_add(size) > self.flash.len() {
            return vec![self.fail(op::SPI_FLASH_MD5, error::FAILED)];
        }
        let mut digest: [u8; 16] = Md5::digest(&self.flash[addr..addr + size]).into();
        if self.fires(Fault::Md5Mismatch) {
            digest[0] ^= 0xFF;
        }
        if self.stub {
            vec![self.reply(op::SPI_FLASH_MD5, 0, &digest, 0, 0)]
        } else {
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            vec![self.reply(op::SPI_FLASH_MD5, 0, hex.as_bytes(), 0, 0)]
        }
    }
}

/// The bootloader's data checksum: XOR of the bytes, seeded with 0xEF.
pub fn xor_checksum(data: &[u8]) -> u32 {
    u32::from(data.iter().fold(0xEFu8, |a, b| a ^ b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(opcode: u8, data: &[u8], checksum: u32) -> Vec<u8> {
        let mut f = vec![0x00, opcode];
        f.extend_from_slice(&(data.len() as u16).to_le_bytes());
        f.extend_from_slice(&checksum.to_le_bytes());
        f.extend_from_slice(data);
        f
    }

    fn words(w: &[u32]) -> Vec<u8> {
        w.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn sent(actions: &[Action]) -> Vec<Vec<u8>> {
        actions
            .iter()
            .filter_map(|a| {
                if let Action::Send(f) = a {
                    Some(f.clone())
                } else {
                    None
                }
            })
            .collect()
    }

    #[test]
    fn sync_chip_id_and_mac_registers() {
        let mut rom = Rom::new(4 << 20, [0x24, 0x0A, 0xC4, 0x12, 0x34, 0x56], vec![]);
        let replies = sent(&rom.handle(&request(op::SYNC, &[7, 7, 0x12, 0x20], 0)));
        assert_eq!(replies.len(), 8);
        assert_eq!(
            replies[0],
            [1, op::SYNC, 4, 0, 0x07, 0x07, 0x12, 0x20, 0, 0, 0, 0]
        );
        let read = |rom: &mut Rom, addr: u32| {
            let r = sent(&rom.handle(&request(op::READ_REG, &words(&[addr]), 0)));
            u32::from_le_bytes(r[0][4..8].try_into().unwrap())
        };
        assert_eq!(read(&mut rom, CHIP_MAGIC_REG), ESP32_MAGIC);
        assert_eq!(read(&mut rom, EFUSE_BLOCK0 + 4), 0xC412_3456);
        assert_eq!(read(&mut rom, EFUSE_BLOCK0 + 8) & 0xFFFF, 0x240A);
        assert_eq!(read(&mut rom, SPI_W0), 0x0016_40EF);
    }

    #[test]
    fn uncompressed_write_with_checksums_and_md5() {
        let mut rom = Rom::new(1 << 20, [0; 6], vec![]);
        rom.handle(&request(
            op::FLASH_BEGIN,
            &words(&[0x1000, 1, 0x400, 0x1000]),
            0,
        ));
        let payload = vec![0xABu8; 0x400];
        let mut data = words(&[0x400, 0, 0, 0]);
        data.extend_from_slice(&payload);
        let ok = sent(&rom.handle(&request(op::FLASH_DATA, &data, xor_checksum(&payload))));
        assert_eq!(ok[0][8], 0, "status ok");
        let bad = sent(&rom.handle(&request(op::FLASH_DATA, &data, 0x12)));
        assert_eq!((bad[0][8], bad[0][9]), (1, error::BAD_CHECKSUM));
        assert!(rom.flash[0x1000..0x1400].iter().all(|&b| b == 0xAB));
        let md5 = sent(&rom.handle(&request(
            op::SPI_FLASH_MD5,
            &words(&[0x1000, 0x400, 0, 0]),
            0,
        )));
        let expected: String = Md5::digest(&payload)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(&md5[0][8..40], expected.as_bytes());
        assert_eq!(md5[0].len(), 44);
        assert_eq!(
            rom.handle(&request(op::FLASH_END, &words(&[0]), 0)).last(),
            Some(&Action::Reboot)
        );
    }

    #[test]
    fn stub_upload_then_compressed_write() {
        use std::io::Write as _;
        let mut rom = Rom::new(1 << 20, [0; 6], vec![]);
        rom.handle(&request(
            op::MEM_BEGIN,
            &words(&[4, 1, 0x1800, 0x4008_0000]),
            0,
        ));
        let actions = rom.handle(&request(op::MEM_END, &words(&[0, 0x4008_0400]), 0));
        assert_eq!(actions.last(), Some(&Action::Send(b"OHAI".to_vec())));
        assert!(rom.stub);
        let image: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&image).unwrap();
        let compressed = z.finish().unwrap();
        rom.handle(&request(
            op::FLASH_DEFL_BEGIN,
            &words(&[image.len() as u32, 2, 0x4000, 0x10000]),
            0,
        ));
        for (seq, block) in compressed.chunks(0x4000).enumerate() {
            let mut data = words(&[block.len() as u32, seq as u32, 0, 0]);
            data.extend_from_slice(block);
            let r = sent(&rom.handle(&request(op::FLASH_DEFL_DATA, &data, xor_checksum(block))));
            assert_eq!(r[0].len(), 10, "stub replies carry 2 status bytes");
            assert_eq!(r[0][8], 0);
        }
        assert_eq!(&rom.flash[0x10000..0x10000 + image.len()], &image[..]);
        let md5 = sent(&rom.handle(&request(
            op::SPI_FLASH_MD5,
            &words(&[0x10000, image.len() as u32, 0, 0]),
            0,
        )));
        assert_eq!(md5[0].len(), 26);
        assert_eq!(&md5[0][8..24], &Md5::digest(&image)[..]);
    }

    #[test]
    fn transient_faults_fire_once() {
        let mut rom = Rom::new(
            1 << 20,
            [0; 6],
            vec![Fault::WriteError(1), Fault::Md5Mismatch],
        );
        rom.handle(&request(op::FLASH_BEGIN, &words(&[0x1000, 1, 0x400, 0]), 0));
        let mut data = words(&[4, 0, 0, 0]);
        data.extend_from_slice(&[1, 2, 3, 4]);
        let first = sent(&rom.handle(&request(op::FLASH_DATA, &data, xor_checksum(&[1, 2, 3, 4]))));
        assert_eq!((first[0][8], first[0][9]), (1, error::FLASH_WRITE));
        let second =
            sent(&rom.handle(&request(op::FLASH_DATA, &data, xor_checksum(&[1, 2, 3, 4]))));
        assert_eq!(second[0][8], 0);
        let a = sent(&rom.handle(&request(op::SPI_FLASH_MD5, &words(&[0, 4, 0, 0]), 0)));
        let b = sent(&rom.handle(&request(op::SPI_FLASH_MD5, &words(&[0, 4, 0, 0]), 0)));
        assert_ne!(a, b, "the first MD5 is wrong, the retry right");
    }
}
