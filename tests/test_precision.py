"""dtype="auto": the CPU pre-filter, the cached micro-benchmark, CUDA, overrides, and the one-time message."""

import json

import pytest
import torch

import tpv.bridge.precision as precision
from tpv.bridge.precision import choose_dtype, resolve_dtype
from tpv.core.errors import TPVError

EPYC_BF16 = "model name\t: AMD EPYC 9654\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n"
EPYC_AVX2 = "model name\t: AMD EPYC 7B12\nflags\t\t: fpu sse avx2 fma\n"


@pytest.fixture
def cpu(monkeypatch, tmp_path):
    """A mocked CPU: set ``cpu.info`` (the /proc/cpuinfo text) and ``cpu.gflops`` ({dtype: GFLOP/s})."""

    class FakeCPU:
        info = EPYC_BF16
        gflops = {torch.bfloat16: 300.0, torch.float32: 130.0}
        measured: list = []

    def measure(dtype, *args, **kwargs):
        FakeCPU.measured.append(dtype)
        return FakeCPU.gflops[dtype]

    monkeypatch.setenv("TPV_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TPV_DTYPE", raising=False)
    monkeypatch.setattr(precision, "_cpuinfo", lambda: FakeCPU.info)
    monkeypatch.setattr(precision, "measure_gflops", measure)
    monkeypatch.setattr(precision, "_announced", set())
    FakeCPU.measured = []
    return FakeCPU


def test_cpu_with_fast_bfloat16_gets_it_and_the_measurement_is_cached(cpu, tmp_path):
    choice = choose_dtype("cpu", announce=False)
    assert choice.dtype == "bfloat16" and choice.torch_dtype == torch.bfloat16
    assert "2.3× faster" in choice.reason and "AMD EPYC 9654" in choice.reason and "avx512_bf16" in choice.reason
    assert cpu.measured == [torch.bfloat16, torch.float32]
    [cached] = (tmp_path / "cache" / "dtype").iterdir()
    assert json.loads(cached.read_text())["dtype"] == "bfloat16"
    assert choose_dtype("cpu", announce=False) == choice
    assert len(cpu.measured) == 2, "the second call must read the cache, not measure again"


def test_cpu_where_bfloat16_measures_slower_gets_float32(cpu):
    cpu.gflops = {torch.bfloat16: 3.0, torch.float32: 120.0}
    choice = choose_dtype("cpu", announce=False)
    assert choice.dtype == "float32" and "40.0× slower" in choice.reason
    assert resolve_dtype("auto") == torch.float32


def test_near_tie_stays_float32(cpu):
    cpu.gflops = {torch.bfloat16: 105.0, torch.float32: 100.0}
    assert choose_dtype("cpu", announce=False).dtype == "float32"


def test_cpu_without_bf16_instructions_gets_float32_without_measuring(cpu):
    cpu.info = EPYC_AVX2
    choice = choose_dtype("cpu", announce=False)
    assert choice.dtype == "float32" and "no AMX or AVX512-BF16" in choice.reason and "AMD EPYC 7B12" in choice.reason
    assert cpu.measured == []


def test_cache_is_per_thread_count(cpu, monkeypatch):
    choose_dtype("cpu", announce=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 97)
    choose_dtype("cpu", announce=False)
    assert len(cpu.measured) == 4


def test_damaged_cache_is_measured_again(cpu, tmp_path):
    choose_dtype("cpu", announce=False)
    [cached] = (tmp_path / "cache" / "dtype").iterdir()
    cached.write_text("{not json")
    assert choose_dtype("cpu", announce=False).dtype == "bfloat16" and len(cpu.measured) == 4


def test_choice_is_announced_once_on_stderr(cpu, capsys):
    choose_dtype("cpu")
    choose_dtype("cpu")
    err = capsys.readouterr().err
    assert err.count("tpv: bfloat16: measured") == 1 and "--dtype" in err


def test_cuda_gets_bfloat16_where_it_runs_natively(cpu, monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    choice = choose_dtype("cuda", announce=False)
    assert choice.dtype == "bfloat16" and "NVIDIA H100 (compute capability 9.0)" in choice.reason
    # torch's is_bf16_supported() says yes on a T4, where bfloat16 is emulated and slower than float32.
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    choice = choose_dtype("cuda:0", announce=False)
    assert choice.dtype == "float32" and "compute capability 7.5 < 8.0" in choice.reason
    assert cpu.measured == []


def test_overrides_env_then_explicit(cpu, monkeypatch):
    monkeypatch.setenv("TPV_DTYPE", "float32")
    assert resolve_dtype("auto") == torch.float32 and resolve_dtype(None) == torch.float32
    assert resolve_dtype("bfloat16") == torch.bfloat16 and resolve_dtype(torch.float16) == torch.float16
    assert cpu.measured == []
    monkeypatch.setenv("TPV_DTYPE", "auto")
    assert resolve_dtype("auto") == torch.bfloat16


def test_unknown_names_are_refused_with_the_choices(cpu, monkeypatch):
    with pytest.raises(TPVError, match=r"unknown dtype 'fp32'; use 'auto' or one of \['float32'"):
        resolve_dtype("fp32")
    monkeypatch.setenv("TPV_DTYPE", "half")
    with pytest.raises(TPVError, match=r"unknown \$TPV_DTYPE 'half'"):
        resolve_dtype("auto")


def test_real_measurement_returns_positive_speeds():
    # Tiny shapes: checks the timing loop itself, not this machine's speed.
    assert precision.measure_gflops(torch.float32, (8, 16, 16), budget_s=0.001) > 0
