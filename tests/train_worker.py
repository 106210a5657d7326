"""A small prompt-tuning run for tests that need a process of its own: kills, locks, torchrun.

``python tests/train_worker.py OUTPUT_DIR [--kill-at N | --kill-on PATTERN] [--torn] [--batch-size B]
[--log-writes DIR] [key=value ...]`` trains the tiny Llama on toy data (12 steps, a checkpoint every 3, crossing
an epoch) and prints the vector as JSON. An audit hook counts the file-system changes it makes in OUTPUT_DIR (a
file opened for writing, a rename, a deletion); the process SIGKILLs itself at the N-th, or at the first that
touches a path matching PATTERN (relative to OUTPUT_DIR). With ``--torn`` it first leaves half a file there, as a
kill in the middle of a write would. ``--log-writes DIR`` records every file each rank writes, and how many
examples it evaluates, in DIR.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import signal
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

SETTINGS = dict(
    max_steps=12,
    batch_size=4,
    num_virtual_tokens=3,
    learning_rate=0.3,
    eval_steps=3,
    progress=False,
    training_args={"logging_steps": 1},
)
_EVENTS = {"open", "os.rename", "os.remove", "os.rmdir"}
LOCK = ".tpv.lock"


def run(output_dir, batch_size: int = 4, **overrides):
    """The run every test compares against: same data, model and settings in every process."""
    from conftest import TINY_MODELS, make_word_tokenizer, toy_examples
    from tpv.data import Task
    from tpv.engine.training import train_prompt

    task = Task("toy", "sentiment", "text: {text} label:", ("negative", "positive"))
    settings = SETTINGS | {"batch_size": batch_size} | overrides
    return train_prompt(
        TINY_MODELS["llama"](),
        make_word_tokenizer(),
        task,
        0,
        toy_examples(32),
        eval_data=toy_examples(8, seed=9),
        output_dir=output_dir,
        **settings,
    )


def _kill_at(folder: Path, n: int, pattern: str | None, torn: bool) -> list[int]:
    """Install the hook; returns the running count of file-system changes in ``folder``."""
    prefix, seen, busy = str(folder.resolve()), [0], [False]

    def hook(event, args):
        if event not in _EVENTS or busy[0]:
            return
        if event == "open":
            mode, flags = args[1], args[2]
            if not (
                isinstance(mode, str)
                and any(c in mode for c in "wax+")
                or isinstance(flags, int)
                and flags & (os.O_WRONLY | os.O_RDWR)
            ):
                return
        paths = [os.fsdecode(p) for p in args[: 2 if event == "os.rename" else 1] if isinstance(p, (str, bytes))]
        # Deletions inside shutil.rmtree name files relative to a folder descriptor: they count too.
        if (
            not paths
            or any(p.endswith(LOCK) for p in paths)
            or os.path.isabs(paths[0])
            and not paths[0].startswith(prefix)
        ):
            return
        seen[0] += 1
        relative = [os.path.relpath(p, prefix) for p in paths if os.path.isabs(p)]
        if seen[0] == n or pattern and any(fnmatch.fnmatch(p, pattern) for p in relative):
            busy[0] = True
            if torn and event == "open" and os.path.isabs(paths[0]):
                with open(paths[0], "wb") as half:
                    half.write(b"\0" * 7)
            os.kill(os.getpid(), signal.SIGKILL)

    sys.addaudithook(hook)
    return seen


def _log_writes(folder: Path, log_dir: Path) -> None:
    rank = os.environ.get("RANK", "0")
    log = open(log_dir / f"writes-{rank}.txt", "a", buffering=1)  # noqa: SIM115  (open for the whole run)
    prefix = str(folder.resolve())

    def note(path):
        path = os.path.abspath(os.fsdecode(path))
        if path.startswith(prefix) and not path.endswith(LOCK):
            log.write(path + "\n")

    def hook(event, args):
        if event == "open" and isinstance(args[0], (str, bytes)):
            mode, flags = args[1], args[2]
            if (
                isinstance(mode, str)
                and any(c in mode for c in "wax+")
                or isinstance(flags, int)
                and flags & (os.O_WRONLY | os.O_RDWR)
            ):
                note(args[0])
        elif event == "os.rename":
            note(args[1])

    sys.addaudithook(hook)

    # How many examples each process scores, to show evaluation is split between them.
    import tpv.engine.training

    evaluate = tpv.engine.training.evaluate

    def counted(model, tokenizer, task, data, **kwargs):
        with open(log_dir / f"evaluated-{rank}.txt", "a") as counts:
            counts.write(f"{len(data)}\n")
        return evaluate(model, tokenizer, task, data, **kwargs)

    tpv.engine.training.evaluate = counted


def _announce_native_writes() -> None:
    """torch.save and safetensors write from C++/Rust, out of the audit hooks' sight: make them announce it."""
    import safetensors.torch
    import torch

    def announcing(write, position):
        def wrapper(*args, **kwargs):
            target = args[position] if len(args) > position else kwargs.get("f", kwargs.get("filename"))
            if isinstance(target, (str, os.PathLike)):
                sys.audit("open", os.fspath(target), "wb", os.O_WRONLY)
            return write(*args, **kwargs)

        return wrapper

    torch.save = announcing(torch.save, 1)
    # Before tpv and PEFT import it by name.
    safetensors.torch.save_file = announcing(safetensors.torch.save_file, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--kill-at", type=int, default=0)
    parser.add_argument(
        "--kill-on", default=None, metavar="PATTERN", help="kill at the first change of a matching path"
    )
    parser.add_argument("--torn", action="store_true")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--log-writes", type=Path)
    parser.add_argument("overrides", nargs="*", help="key=value (JSON values) passed to train_prompt")
    # Intermixed: key=value overrides may follow options (torchrun tests append them last).
    args = parser.parse_intermixed_args()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    _announce_native_writes()
    if args.log_writes:
        _log_writes(args.output_dir, args.log_writes)
    events = _kill_at(args.output_dir, args.kill_at, args.kill_on, args.torn)
    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.overrides)}
    result = run(args.output_dir, args.batch_size, **overrides)
    # Last line of stdout (Trainer prints its logs there too).
    print(
        json.dumps(
            {
                "vector": result.vector.tensor.flatten().tolist(),
                "path": str(result.vector_path),
                "events": events[0],
                "engine": result.engine,
            }
        )
    )
    # Trainer leaves the gloo group to interpreter exit, where tearing it down can abort a rank
    # ("terminate called without an active exception", seen with torch 2.13 on Python 3.13): close it here.
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
