"""Runs Espressif's esp-idf-nvs-partition-gen `generate` on many CSVs in one process.

Input (argv[1]): a TSV manifest, one case per line: dir, csv, out, size, version.
Output (stdout): one JSON object per case, {"ok": true} or {"ok": false, "error": "..."}.
Each case runs with the working directory set to its folder, because the tool resolves
`file` rows against the working directory.
"""

import contextlib
import io
import json
import os
import sys
from types import SimpleNamespace

from esp_idf_nvs_partition_gen import nvs_partition_gen as gen


def run_case(folder, csv, out, size, version):
    os.chdir(folder)
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            gen.generate(SimpleNamespace(input=[csv], output=out, size=size, version=int(version), outdir=folder))
    except BaseException as exc:  # the tool exits through sys.exit and raw exceptions alike
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    if not os.path.exists(out):
        # check_size() exits 0 on some bad sizes without writing anything.
        return {"ok": False, "error": "no output written: " + sink.getvalue()[-200:]}
    return {"ok": True}


def main():
    with open(sys.argv[1], encoding="utf8") as manifest:
        for line in manifest:
            folder, csv, out, size, version = line.rstrip("\n").split("\t")
            print(json.dumps(run_case(folder, csv, out, size, version)), flush=True)


if __name__ == "__main__":
    main()
