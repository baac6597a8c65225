//! The partition table reader (CSV or binary): an error or a table whose binary form reads
//! back as the same partitions.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vesper_core::partitions::PartitionTable;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(table) = PartitionTable::parse(bytes, "fuzz") {
        let _ = table.describe();
        if let Ok(bin) = table.to_bin() {
            let again = PartitionTable::parse(&bin, "again").expect("our own binary reads back");
            assert_eq!(again.partitions(), table.partitions());
        }
    }
});
