"""tpv.experiments: the smoke profile runs every study end to end, resumes without training, plans, validates."""

import csv
import json
import shutil
import time

import pytest

from tpv import TPVError
from tpv.experiments import STUDIES, load_config, reproduce
from tpv.experiments.config import PROFILES


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    start = time.perf_counter()
    summary = reproduce("smoke", run_dir=root, progress=False)
    return root, summary, time.perf_counter() - start


def test_smoke_profile_runs_every_study_and_writes_its_outputs(smoke_run):
    root, summary, seconds = smoke_run
    assert list(summary["studies"]) == list(STUDIES)
    out = root / f"smoke-{summary['fingerprint']}" / "results"
    assert str(out) == summary["output_dir"]
    for study in STUDIES:
        table = (out / f"{study}.md").read_text()
        assert table.startswith("# ") and "| --- |" in table and "git commit" in table
        payload = json.loads((out / f"{study}.json").read_text())
        assert payload["config"]["name"] == "smoke" and payload["rows"] and payload["commit"]
        with open(out / f"{study}.csv", newline="") as handle:
            assert len(list(csv.DictReader(handle))) == len(payload["rows"])
    for figure in ("similarity_task_prompts", "similarity_task_prompt_vectors", "pairwise_sums", "few_shot_imdb"):
        assert (out / f"{figure}.png").read_bytes()[:4] == b"\x89PNG"
    rows = json.loads((out / "origin_independence.json").read_text())["rows"]
    assert {r["kind"] for r in rows} == {"original", "mixed"} and len(rows) == 2 * 2 * 2
    methods = {r["method"] for r in json.loads((out / "initialisation.json").read_text())["rows"]}
    assert methods == {"random", "spot:sst2", "spot:yelp_polarity", "spot_multi", "attempt", "sum"}


def test_a_second_run_trains_nothing(smoke_run, monkeypatch):
    import tpv.baselines.attempt as attempt
    import tpv.training as training

    def refuse(*args, **kwargs):
        raise AssertionError("a resumed run must not train")

    monkeypatch.setattr(training.PromptTuningTrainer, "train", refuse)
    monkeypatch.setattr(attempt, "_train_loop", refuse)
    root, first, _ = smoke_run
    again = reproduce("smoke", run_dir=root, progress=False)
    assert again["trained"] == 0 and first["trained"] > 0
    assert again["studies"]["initialisation"]["table"] == first["studies"]["initialisation"]["table"]


def test_a_killed_run_resumes_from_its_cached_prompts(smoke_run, tmp_path, monkeypatch):
    root, first, _ = smoke_run
    folder = root / f"smoke-{first['fingerprint']}"
    copy = tmp_path / f"smoke-{first['fingerprint']}"
    shutil.copytree(folder, copy)
    (copy / "scores.json").unlink()  # as if killed before any score was written: prompts stay cached
    import tpv.training as training

    monkeypatch.setattr(training.PromptTuningTrainer, "train",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained a cached prompt")))
    again = reproduce("smoke", run_dir=tmp_path, progress=False, studies=["origin_independence"])
    assert again["trained"] == 0
    assert again["studies"]["origin_independence"]["table"] == first["studies"]["origin_independence"]["table"]


def test_dry_run_prints_a_plan_with_a_cost(tmp_path, capsys):
    summary = reproduce("cpu", run_dir=tmp_path, dry_run=True, measure=False)
    printed = capsys.readouterr().out
    assert "tune source prompts" in printed and "estimated" in printed and " h " in printed
    assert "the profile's constants, not measured here" in printed
    assert summary["estimated_seconds"] > 3600 and not summary["studies"]
    assert not (tmp_path / f"cpu-{summary['fingerprint']}").exists()  # a dry run writes nothing


def test_plan_is_priced_by_speeds_measured_here(tmp_path):
    from tpv.experiments.lab import Lab
    from tpv.experiments.plan import RUN_OVERHEAD_S, Speed, build_plan, format_plan, measure_speed

    lab = Lab(load_config("smoke"), tmp_path / "run", progress=False)
    speed = measure_speed(lab, repeats=2)
    assert speed.seconds_per_step > 0 and speed.seconds_per_example > 0
    assert "measured here: median of 2 steps of 4 × 64 tokens on " in speed.source and "float32" in speed.source
    items = build_plan(lab, speed)
    doubled = build_plan(lab, Speed(2 * speed.seconds_per_step, 2 * speed.seconds_per_example, "x"))
    for one, two in zip(items, doubled):
        overhead = RUN_OVERHEAD_S * (one.count if one.steps else 0)
        assert two.seconds - overhead == pytest.approx(2 * (one.seconds - overhead))
    assert speed.source in format_plan(lab, items, speed)


def test_shipped_profiles_load():
    for name in PROFILES:
        config = load_config(name)
        assert config.name == name and len(config.seeds) >= 2
    assert load_config("cpu").output_dir == "docs/results"
    assert load_config("smoke").output_dir == ""


@pytest.mark.parametrize("edit, match", [
    ('seeds = [0]', "config key 'seeds' = \\[0\\]"),
    ('[source]\ntasks = ["sst2", "nope"]', "'source.tasks' names an unknown task"),
    ('[prompt]\nbatch_size = 0', "'prompt.batch_size' = 0"),
    ('[model]\ndtype = "int4"', "'model.dtype' = 'int4'"),
    ('[transfer]\nmethods = ["magic"]', "'transfer.methods'"),
    ('[transfer]\ncurve_shots = [5000]', "'transfer.curve_shots' = 5000"),
    ('[data]\ntrain_exampels = 3', "unknown config key data.'train_exampels'"),
    ('studies = ["everything"]', "config key 'studies'"),
])
def test_config_errors_name_the_bad_key(tmp_path, edit, match):
    path = tmp_path / "profile.toml"
    # Top-level keys must precede the first [table] in TOML.
    path.write_text('name = "t"\n' + edit + "\n" if edit.startswith("[") else edit + '\nname = "t"\n')
    with pytest.raises(TPVError, match=match):
        load_config(path)


def test_unknown_profile_and_study(tmp_path):
    with pytest.raises(TPVError, match="no profile 'laptop'"):
        load_config("laptop")
    with pytest.raises(TPVError, match="unknown studies"):
        reproduce("smoke", studies=["table9"], run_dir=tmp_path, dry_run=True, progress=False)
