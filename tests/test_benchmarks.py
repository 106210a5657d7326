"""The engine benchmark's smallest setting runs end to end (the real run is not part of CI)."""

import importlib.util
from pathlib import Path

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
