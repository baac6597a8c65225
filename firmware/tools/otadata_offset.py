"""PlatformIO extra script (post): `pio run -t upload` writes boot_app0.bin where the board's own
partition table puts otadata.

The Arduino framework's build script lists boot_app0.bin (a blank otadata) at 0xe000 in
FLASH_EXTRA_IMAGES, where Arduino's default table has otadata. The repository's tables put it
elsewhere (custom_4mb.csv: 0xf000, with the NVS partition over 0x9000-0xf000), so an upload
without this script writes into the NVS partition and a board loses its identity. The station's
own flashing takes offsets from the table and is not affected.

The offsets follow ESP-IDF's gen_esp32part.py: an empty offset continues after the previous
partition, aligned to 0x1000 (data) or 0x10000 (app), starting after the table at 0x8000.
The functions below run without SCons, so a host test checks them on both seed tables.
"""

import csv
import io

TABLE_OFFSET = 0x8000
TABLE_SIZE = 0x1000


def parse_number(text):
    """An offset or size as gen_esp32part.py reads it: hex, decimal, or with K/M."""
    text = text.strip().lower()
    for suffix, factor in (("k", 1024), ("m", 1024 * 1024)):
        if text.endswith(suffix):
            return int(text[:-1], 0) * factor
    return int(text, 0)


def partitions(csv_text):
    """(name, type, subtype, offset, size) for each row, offsets resolved."""
    rows = []
    cursor = TABLE_OFFSET + TABLE_SIZE
    lines = [line for line in csv_text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    for row in csv.reader(io.StringIO("\n".join(lines))):
        row = [field.strip() for field in row] + [""] * 5
        name, kind, subtype, offset, size = row[:5]
        align = 0x10000 if kind == "app" else 0x1000
        start = parse_number(offset) if offset else (cursor + align - 1) // align * align
        length = parse_number(size)
        rows.append((name, kind, subtype, start, length))
        cursor = start + length
    return rows


def otadata_offset(csv_text):
    """The otadata partition's offset; ValueError when the table has none."""
    for name, kind, subtype, offset, _ in partitions(csv_text):
        if kind == "data" and subtype == "ota":
            return offset
    raise ValueError("the partition table has no otadata partition (type data, subtype ota)")


def retarget(images, offset):
    """FLASH_EXTRA_IMAGES with boot_app0.bin moved to `offset`; the rest as it was."""
    return [
        ("0x%x" % offset if str(path).replace("\\", "/").endswith("/boot_app0.bin") else at, path)
        for at, path in images
    ]


try:
    Import("env")  # noqa: F821 - SCons provides it when PlatformIO runs this file
except NameError:
    env = None

if env is not None:
    with open(env.subst("$PARTITIONS_TABLE_CSV"), encoding="utf-8") as table:
        OFFSET = otadata_offset(table.read())
    env.Replace(FLASH_EXTRA_IMAGES=retarget(env.get("FLASH_EXTRA_IMAGES", []), OFFSET))
    print("vesper: boot_app0.bin goes to otadata at 0x%x" % OFFSET)
