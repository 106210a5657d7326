"""Pick the arithmetic the hardware runs fast: ``dtype="auto"`` → bfloat16 where it is faster, else float32.

bfloat16 halves the memory traffic and, on CPUs with AMX or AVX512-BF16 and on recent GPUs, runs matrix
products natively: ~2.3× the float32 speed on an AMD EPYC with avx512_bf16. On CPUs without those
instructions (AVX2-only) PyTorch emulates it, ~47× *slower* than float32. So on a CPU the choice is measured:

1. a fast pre-filter: without ``amx_bf16`` / ``avx512_bf16`` in ``/proc/cpuinfo`` (and torch's reported
   capability below AVX512) bfloat16 is emulated, and float32 is chosen without measuring;
2. otherwise a one-off micro-benchmark of both dtypes on matrix products of SmolLM2-135M's shapes (well
   under a second), cached per machine in ``$TPV_CACHE/dtype/`` (key: CPU model, torch version, threads).

The choice is printed once per process on stderr with its reason. ``TPV_DTYPE`` (``auto``, ``float32``,
``bfloat16``, ``float16``) overrides the default ``"auto"``; an explicit ``dtype=`` argument overrides both.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from tpv.core._io import atomic_write_text, cache_dir
from tpv.core.errors import TPVError

__all__ = [
    "DTYPE_NAMES",
    "DtypeChoice",
    "choose_dtype",
    "cpu_bf16_flags",
    "cpu_model",
    "hardware_summary",
    "measure_gflops",
    "resolve_dtype",
]

DTYPE_NAMES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
ENV_VAR = "TPV_DTYPE"
_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
# SmolLM2-135M's MLP product (hidden 576 → intermediate 1536) on 256 tokens: the matmul that dominates its steps.
_SHAPE = (256, 576, 1536)
# bfloat16 must win by this margin: timings on a busy machine wobble by ~10 %, and a near tie is not worth
# bfloat16's coarser rounding.
_MIN_SPEEDUP = 1.15
_announced: set[tuple] = set()


@dataclass(frozen=True)
class DtypeChoice:
    """What ``dtype="auto"`` picked and why.

    Attributes:
        dtype: ``"float32"`` or ``"bfloat16"``.
        reason: one line for the user, e.g. ``"bfloat16: measured 2.3× faster than float32 on this CPU (…)"``.
        speedup: bfloat16's measured speed over float32's (``None`` when not measured).
    """

    dtype: str
    reason: str
    speedup: float | None = None

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPE_NAMES[self.dtype]


def resolve_dtype(dtype: str | torch.dtype | None = "auto", device: str | torch.device = "cpu") -> torch.dtype:
    """The torch dtype for ``dtype``: a torch dtype or its name as given, ``"auto"`` (or ``None``) chosen here.

    Args:
        dtype: ``"auto"``, ``"float32"``, ``"bfloat16"``, ``"float16"``, a ``torch.dtype`` or ``None`` (= auto).
        device: where the model will run; ``"auto"`` measures that device.

    Returns:
        A ``torch.dtype``. ``"auto"`` reads ``$TPV_DTYPE`` first, then :func:`choose_dtype`.

    Example:
        >>> resolve_dtype("float32")
        torch.float32
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        override = os.environ.get(ENV_VAR, "").strip()
        if override and override != "auto":
            return _named(override, f"${ENV_VAR}")
        return choose_dtype(device).torch_dtype
    return _named(dtype, "dtype")


def _named(name, source: str) -> torch.dtype:
    if name not in DTYPE_NAMES:
        raise TPVError(f"unknown {source} {name!r}; use 'auto' or one of {list(DTYPE_NAMES)}")
    return DTYPE_NAMES[name]


def choose_dtype(device: str | torch.device = "cpu", *, announce: bool = True) -> DtypeChoice:
    """Choose float32 or bfloat16 for ``device``: what its hardware multiplies faster (see the module note).

    Args:
        device: ``"cpu"`` or a CUDA device.
        announce: print the choice and its reason on stderr (once per process and choice).

    Returns:
        A :class:`DtypeChoice` with the dtype and the reason.

    Example:
        >>> choose_dtype("cpu", announce=False).dtype in ("float32", "bfloat16")
        True
    """
    device = torch.device(device)
    if device.type == "cuda":
        choice = _cuda_choice(device)
    elif device.type == "cpu":
        choice = _cpu_choice()
    else:
        choice = DtypeChoice("float32", f"float32: no bfloat16 check for device type {device.type!r}")
    if announce and (device.type, choice.reason) not in _announced:
        _announced.add((device.type, choice.reason))
        print(f"tpv: {choice.reason}  (override with dtype= / --dtype / ${ENV_VAR})", file=sys.stderr, flush=True)
    return choice


def _cuda_choice(device: torch.device) -> DtypeChoice:
    name, capability = torch.cuda.get_device_name(device), torch.cuda.get_device_capability(device)
    # torch.cuda.is_bf16_supported() also says yes where bfloat16 is only emulated (T4, V100: compute capability
    # below 8.0), which is slower than float32 there; tensor cores run it from Ampere (8.0) on.
    if capability >= (8, 0):
        return DtypeChoice(
            "bfloat16", f"bfloat16: {name} (compute capability {capability[0]}.{capability[1]}) runs it natively"
        )
    return DtypeChoice(
        "float32",
        f"float32: {name} (compute capability {capability[0]}.{capability[1]} < 8.0) has no native bfloat16",
    )


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo``'s ``model name``, else ``platform.processor()``)."""
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_bf16_flags() -> list[str]:
    """The bfloat16 instruction flags (``amx_bf16``, ``avx512_bf16``) that ``/proc/cpuinfo`` lists."""
    flags = set()
    for line in _cpuinfo().splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return [flag for flag in _BF16_FLAGS if flag in flags]


def hardware_summary(dtype: str | torch.dtype | None = None) -> str:
    """One line naming the CPU, its ISA and the dtype, to print beside a timing.

    Example:
        >>> "torch" in hardware_summary("float32")
        True
    """
    flags = cpu_bf16_flags()
    isa = torch.backends.cpu.get_cpu_capability() + (f", {'/'.join(flags)}" if flags else "")
    text = f"{cpu_model()} ({isa}), {torch.get_num_threads()} threads, torch {torch.__version__}"
    if dtype is not None:
        text += f", {str(dtype).removeprefix('torch.')}"
    return text


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""


def _cpu_choice() -> DtypeChoice:
    name, flags, capability = cpu_model(), cpu_bf16_flags(), torch.backends.cpu.get_cpu_capability()
    where = f"{name}, {capability}" + (f", {'/'.join(flags)}" if flags else "")
    # Emulated bfloat16 is so slow (47× on an AVX2 EPYC) that even the benchmark would take seconds there.
    if _cpuinfo() and not flags:
        return DtypeChoice(
            "float32",
            f"float32: this CPU has no AMX or AVX512-BF16, so bfloat16 is emulated and many times slower ({where})",
        )
    key = f"{name}|torch {torch.__version__}|{torch.get_num_threads()} threads"
    path = _cache_path(key)
    cached = _read_cached(path, key)
    if cached is not None:
        return cached
    bf16, fp32 = measure_gflops(torch.bfloat16), measure_gflops(torch.float32)
    speedup = bf16 / fp32
    if speedup >= _MIN_SPEEDUP:
        choice = DtypeChoice(
            "bfloat16",
            f"bfloat16: measured {speedup:.1f}× faster than float32 on this CPU "
            f"({where}; {bf16:.0f} vs {fp32:.0f} GFLOP/s)",
            speedup,
        )
    else:
        slower = f"{1 / speedup:.1f}× slower" if speedup < 1 else f"only {speedup:.2f}× faster"
        choice = DtypeChoice(
            "float32",
            f"float32: bfloat16 is {slower} than float32 on this CPU ({where}; {bf16:.0f} vs {fp32:.0f} GFLOP/s)",
            speedup,
        )
    try:
        atomic_write_text(path, json.dumps({"key": key, **asdict(choice)}, indent=1))
    except OSError:
        pass  # a read-only cache only costs a re-measurement next time
    return choice


def _cache_path(key: str) -> Path:
    return cache_dir() / "dtype" / f"cpu-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def _read_cached(path: Path, key: str) -> DtypeChoice | None:
    try:
        record = json.loads(path.read_text())
        if record.get("key") == key and record.get("dtype") in ("float32", "bfloat16"):
            return DtypeChoice(record["dtype"], record["reason"], record.get("speedup"))
    except (OSError, ValueError, KeyError, TypeError):
        pass  # missing or damaged: measure again and overwrite
    return None


def measure_gflops(dtype: torch.dtype, shape: tuple[int, int, int] = _SHAPE, budget_s: float = 0.25) -> float:
    """Matrix-multiply speed in ``dtype`` on this CPU: GFLOP/s of the best of several ``(rows × inner) @
    (inner × cols)`` products, spending about ``budget_s`` seconds."""
    rows, inner, cols = shape
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(rows, inner, generator=generator).to(dtype)
    b = torch.randn(inner, cols, generator=generator).to(dtype)
    # The best of several runs: other processes on a shared machine only ever make a run slower.
    best = float("inf")
    with torch.no_grad():
        torch.mm(a[:32], b)  # warm-up (small, in case this dtype is emulated): kernel selection, page faults
        spent, runs = 0.0, 0
        while runs < 3 or (spent < budget_s and runs < 50):
            start = time.perf_counter()
            torch.mm(a, b)
            took = time.perf_counter() - start
            best, spent, runs = min(best, took), spent + took, runs + 1
            if spent > 4 * budget_s:
                break
    return 2 * rows * inner * cols / max(best, 1e-9) / 1e9
