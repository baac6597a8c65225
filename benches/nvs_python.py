"""The same job as benches/nvs_device_image.rs with Espressif's generator (esp-idf-nvs-partition-gen).

Builds 10,000 per-device NVS images (0x6000 bytes, namespace `vesper`, 8 keys) through the tool's
in-memory functions (nvs_open / write_entry / nvs_close into a BytesIO), best of 3 rounds, and 200
images through a CSV file and the tool's `generate` (what the customer's plan does per device).
Run with the test venv: .venv/bin/python benches/nvs_python.py
"""

import contextlib
import io
import os
import secrets
import tempfile
import time
from types import SimpleNamespace

from esp_idf_nvs_partition_gen import nvs_partition_gen as gen

DEVICES = 10_000
ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def serial():
    return "PV-26A18-BC02R-" + "".join(secrets.choice(ALPHABET) for _ in range(5))


def rows(sn):
    return [
        ("vesper", "namespace", "", ""),
        ("serial_number", "data", "string", sn),
        ("hw_type", "data", "string", "BC"),
        ("hw_version", "data", "string", "02"),
        ("mqtt_user", "data", "string", sn),
        ("mqtt_pass", "data", "string", secrets.token_hex(16)),
        ("mqtt_host", "data", "string", "mqtt.example.com"),
        ("mqtt_port", "data", "u16", "1883"),
        ("psram", "data", "u8", "1"),
    ]


def in_memory(devices):
    for sn_rows in devices:
        out = io.BytesIO()
        nvs = gen.nvs_open(out, 0x6000 - 4096, gen.Page.VERSION2)
        for key, kind, encoding, value in sn_rows:
            gen.write_entry(nvs, key, kind, encoding, value)
        gen.nvs_close(nvs)
        assert len(out.getvalue()) == 0x6000


def through_csv(devices, folder):
    for i, sn_rows in enumerate(devices):
        path = os.path.join(folder, f"d{i}.csv")
        with open(path, "w", encoding="utf8") as f:
            f.write("key,type,encoding,value\n")
            for row in sn_rows:
                f.write(",".join(row) + "\n")
        args = SimpleNamespace(input=[path], output=os.path.join(folder, f"d{i}.bin"), size="0x6000", version=2, outdir=folder)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            gen.generate(args)


def best(rounds, job):
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        job()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    devices = [rows(serial()) for _ in range(DEVICES)]
    memory = best(3, lambda: in_memory(devices))
    with tempfile.TemporaryDirectory() as folder:
        csv = best(3, lambda: through_csv(devices[:200], folder))
    print(f"esp-idf-nvs-partition-gen, {DEVICES} images in memory, best of 3: "
          f"{memory * 1e3:.1f} ms total, {memory * 1e6 / DEVICES:.2f} us per image")
    print(f"esp-idf-nvs-partition-gen, 200 images through a CSV file: {csv * 1e6 / 200:.1f} us per image")


if __name__ == "__main__":
    main()
