"""The engine benchmark's smallest setting runs end to end (the real run is not part of CI)."""

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "engine.py"


def test_engine_benchmark_smoke(tmp_path):
    spec = importlib.util.spec_from_file_location("engine_benchmark", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "bench.md"
    results = module.main(["--smoke", "--steps", "2", "--eval-examples", "8", "--max-new-tokens", "4",
                           "--out", str(out)])
    text = out.read_text()
    assert "| tpv `train_prompt` |" in text and "| rank floor" in text
    for run in ("ours", "recipe", "floor"):
        assert results["train"][run]["examples_per_s"] > 0
    assert results["eval"]["rank"]["examples_per_s"] > 0
