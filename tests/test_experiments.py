"""tpv.experiments: the smoke profile runs every study end to end, resumes without training, plans, validates."""

import csv
import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from tpv import TPVError
from tpv.experiments import STUDIES, load_config, reproduce
from tpv.experiments.config import PROFILES


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    # Its time is a CI budget (measured in docs/protocol.md), not an assertion: a shared runner can be slow.
    root = tmp_path_factory.mktemp("runs")
    summary = reproduce("smoke", run_dir=root, progress=False)
    return root, summary, None


def test_smoke_profile_runs_every_study_and_writes_its_outputs(smoke_run):
    root, summary, _ = smoke_run
    assert list(summary["studies"]) == list(STUDIES)
    out = root / f"smoke-{summary['fingerprint']}" / "results"
    assert str(out) == summary["output_dir"]
    for study in STUDIES:
        table = (out / f"{study}.md").read_text()
        assert table.startswith("# ") and "| --- |" in table and "git commit" in table
        # A run smaller than the paper's says how small on every page.
        smoke = load_config("smoke")
        assert f"Scale of this run: test subsets of {smoke.data.test_examples} examples per task" in table
        assert ("k-shot runs of" in table) == (study in ("initialisation", "few_shot"))
        payload = json.loads((out / f"{study}.json").read_text())
        assert payload["config"]["name"] == "smoke" and payload["rows"] and payload["commit"]
        with open(out / f"{study}.csv", newline="") as handle:
            assert len(list(csv.DictReader(handle))) == len(payload["rows"])
    for figure in ("similarity_task_prompts", "similarity_task_prompt_vectors", "pairwise_sums", "few_shot_imdb"):
        assert (out / f"{figure}.png").read_bytes()[:4] == b"\x89PNG"
    rows = json.loads((out / "origin_independence.json").read_text())["rows"]
    assert {r["kind"] for r in rows} == {"original", "mixed"} and len(rows) == 2 * 2 * 2
    methods = {r["method"] for r in json.loads((out / "initialisation.json").read_text())["rows"]}
    assert methods == {"random", "spot:sst2", "spot:yelp_polarity", "spot_multi", "attempt", "sum_search"}
    assert payload["device"] == "cpu" and payload["hardware"] and payload["fingerprint"] == summary["fingerprint"]
    # Every score of the study was computed here, and the page and the JSON say so.
    [machine] = payload["computed_by"]
    assert machine["device"] == "cpu" and machine["commit"] == payload["commit"] and machine["entries"] > 0
    assert f"{machine['entries']} on cpu" in (out / f"{study}.md").read_text()


def test_a_second_run_trains_nothing(smoke_run, monkeypatch):
    import tpv.compose.baselines.attempt as attempt
    import tpv.engine.training as training

    def refuse(*args, **kwargs):
        raise AssertionError("a resumed run must not train")

    monkeypatch.setattr(training.PromptTuningTrainer, "train", refuse)
    monkeypatch.setattr(attempt, "_train_loop", refuse)
    root, first, _ = smoke_run
    out = Path(first["output_dir"])
    before = {path.name: path.read_bytes() for path in out.iterdir() if path.suffix in (".md", ".csv", ".json")}
    again = reproduce("smoke", run_dir=root, progress=False)
    assert again["trained"] == 0 and first["trained"] > 0
    # The pages come back byte for byte, apart from the timings.
    timing = re.compile(rb'wall-clock time of this study [0-9.]+ s|"seconds": [0-9.e-]+')
    for name, content in before.items():
        assert timing.sub(b"", (out / name).read_bytes()) == timing.sub(b"", content), name


def test_a_killed_run_resumes_from_its_cached_prompts(smoke_run, tmp_path, monkeypatch):
    root, first, _ = smoke_run
    folder = root / f"smoke-{first['fingerprint']}"
    copy = tmp_path / f"smoke-{first['fingerprint']}"
    shutil.copytree(folder, copy)
    (copy / "scores.json").unlink()  # as if killed before any score was written: prompts stay cached
    import tpv.engine.training as training

    monkeypatch.setattr(
        training.PromptTuningTrainer,
        "train",
        lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained a cached prompt")),
    )
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


def test_curve_targets_limit_the_few_shot_runs_to_those_targets(tmp_path):
    from tpv.experiments.lab import Lab
    from tpv.experiments.plan import build_plan

    def k_shot_units(config):
        items = build_plan(Lab(config, tmp_path / "run", progress=False))
        return sum(item.count for item in items if item.what.startswith("k-shot"))

    config = load_config("paper-cpu")
    config.transfer.curve_shots, config.transfer.curve_targets = [0, 100], []  # study 4's shots, every target
    everywhere = k_shot_units(config)
    config.transfer.curve_shots = [0, 10, 25, 100]
    config.transfer.curve_targets = ["sst5"]
    assert config.shots_for("sst5") == [0, 10, 25, 100] and config.shots_for("snli") == [0, 100]
    # 10 and 25 shots for one target only: per origin, (random, 2 SPoT, ATTEMPT, sum).
    assert k_shot_units(config) - everywhere == 2 * 1 * len(config.seeds) * 5
    assert config.curve_targets() == ["sst5"]
    with pytest.raises(TPVError, match=r"\['trec'\] are no family's target"):
        load_config("paper-cpu").transfer.__class__(families=config.transfer.families, curve_targets=["trec"])


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


@pytest.mark.parametrize(
    "edit, match",
    [
        ("seeds = [0]", "config key 'seeds' = \\[0\\]"),
        ('[source]\ntasks = ["sst2", "nope"]', "'source.tasks' names an unknown task"),
        ("[prompt]\nbatch_size = 0", "'prompt.batch_size' = 0"),
        ('[model]\ndtype = "int4"', "'model.dtype' = 'int4'"),
        ('[transfer]\nmethods = ["magic"]', "'transfer.methods'"),
        ("[transfer]\ncurve_shots = [5000]", "'transfer.curve_shots' = 5000"),
        ("[data]\ntrain_exampels = 3", "unknown config key data.'train_exampels'"),
        ('studies = ["everything"]', "config key 'studies'"),
        ("[source]\ntask_steps = { nope = 10 }", "'source.task_steps' names an unknown task"),
        ("[source]\ntask_steps = { sst2 = 0 }", "'source.task_steps.sst2' = 0"),
        ("[source]\ntask_steps = 10", "'source.task_steps' = 10 is invalid: use a table"),
        ("[source]\ntask_learning_rates = { sst2 = -1 }", "'source.task_learning_rates.sst2' = -1"),
        ('[source]\nat_chance = ["stsb"]', "\\['stsb'\\] are not in source.tasks"),
        ("[source]\ntask_learning_rates = { nope = 0.1 }", "'source.task_learning_rates' names an unknown task"),
        ("[source]\nearly_stopping_patience = 2", "set source.checkpoint_examples > 0 too"),
    ],
)
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


# ---- the paper's protocol ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper-runs")
    summary = reproduce("paper-smoke", run_dir=root, progress=False)
    folder = root / f"paper-smoke-{summary['fingerprint']}"
    return folder, summary


def _paper_lab(folder):
    from tpv.experiments.lab import Lab

    return Lab(load_config("paper-smoke"), folder, progress=False)


def test_paper_smoke_runs_every_study_with_generation_binary_f1_and_lambdas(paper_run):
    folder, summary = paper_run
    assert list(summary["studies"]) == list(STUDIES)
    out = folder / "results"
    payload = json.loads((out / "initialisation.json").read_text())
    rows = payload["rows"]
    assert {r["scoring"] for r in rows} == {"generate"} and all("rank_score" in r for r in rows)
    assert all(0 <= r["invalid"] <= r["n"] and r["binary_f1"] is not None for r in rows)  # imdb is binary
    # λ = 1 for the paper's sum; the searched λ is published per origin for tpv's extra row.
    assert {r["scale"] for r in rows if r["method"] == "sum"} == {1.0}
    assert all(r["scale"] in (0.5, 1.0) for r in rows if r["method"] == "sum_search")
    assert set(payload["summary"]["significance"]["imdb"]) == {"0", "2"}
    table = (out / "initialisation.md").read_text()
    assert "(ours, λ = 1)" in table and "(sum, λ on target validation)" in table and "binary F1" in table
    assert "Bonferroni" in table and "protocol `paper`" in table
    with open(out / "pairwise_sums.csv", newline="") as handle:
        assert all(row["scale"] for row in csv.DictReader(handle))


def test_paper_studies_split_into_shards_that_fill_the_cache(paper_run, tmp_path, monkeypatch):
    """`--shard 1/2` and `--shard 2/2` of the paper's five studies at the same time in one run folder: source
    vectors both need are tuned once (one shard waits for the other), and the run without a shard then trains
    nothing and writes the tables the unsharded run wrote."""
    import subprocess
    import sys

    import tpv.compose.baselines.attempt as attempt
    import tpv.engine.training as training

    code = (
        "import sys; from tpv.experiments import reproduce; "
        "s = reproduce('paper-smoke', run_dir=sys.argv[1], progress=False, shard=sys.argv[2]); print(s['trained'])"
    )
    shards = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path), part], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for part in ("1/2", "2/2")
    ]
    trained = []
    for shard in shards:
        out, err = shard.communicate(timeout=1200)
        assert shard.returncode == 0, err
        trained.append(int(out.split()[-1]))

    def refuse(*args, **kwargs):
        raise AssertionError("the shards must have trained everything")

    monkeypatch.setattr(training.PromptTuningTrainer, "train", refuse)
    monkeypatch.setattr(attempt, "_train_loop", refuse)
    merged = reproduce("paper-smoke", run_dir=tmp_path, progress=False)
    first = paper_run[1]
    # Every prompt was tuned exactly once between the two shards: none twice, none left for the merging run.
    assert merged["trained"] == 0 and sum(trained) == first["trained"] and min(trained) > 0
    for name, study in first["studies"].items():
        assert merged["studies"][name]["table"] == study["table"], name


def test_paper_protocol_uses_the_official_origins(paper_run):
    from tpv.core.origin import make_origin

    lab = _paper_lab(paper_run[0])
    origin = lab.origin(1)
    assert origin.recipe == "paper(seed=1)"
    assert torch.equal(origin.tensor, make_origin(lab.load()[0], 4, seed=1, method="paper").tensor)


def test_paper_protocol_draws_the_same_k_shots_for_every_origin(tmp_path):
    from tpv.experiments.lab import Lab

    paper = Lab(load_config("paper-smoke"), tmp_path, progress=False)
    assert paper.shots("imdb", 2, seed=0) == paper.shots("imdb", 2, seed=1) == paper.shots("imdb", 2, seed=7)
    tpv_lab = Lab(load_config("smoke"), tmp_path, progress=False)
    draws = {tuple(e["text"] for e in tpv_lab.shots("imdb", 4, seed=s)) for s in range(4)}
    assert len(draws) > 1  # tpv's protocol draws per origin


def test_paper_sum_at_zero_shots_is_origin_plus_vectors_at_lambda_one(paper_run):
    from tpv.experiments.studies.transfer import _initial_prompt

    lab = _paper_lab(paper_run[0])
    family = lab.config.transfer.families[0]
    expected = lab.origin(0).tensor + sum(lab.source_vector(s, 0).tensor for s in family.sources)
    torch.testing.assert_close(_initial_prompt(lab, family, "imdb", "sum", 0), expected)
    assert lab.trained == 0  # everything came from the run folder


def test_paper_attempt_is_untrained_at_zero_shots_and_trained_on_the_shots_only(paper_run):
    from tpv.compose.baselines.attempt import Attempt

    folder = paper_run[0]
    lab = _paper_lab(folder)
    module = lab.attempt(["sst2", "yelp_polarity"], seed=0)
    fresh = Attempt(
        lab.attempt_base,
        {s: lab.source_vector(s, 0).apply_to(lab.origin(0)) for s in ["sst2", "yelp_polarity"]},
        variant="reference",
        seed=0,
    )
    assert module.variant == "reference" and all(
        torch.equal(a, b) for a, b in zip(module.state().values(), fresh.state().values())
    )
    torch.testing.assert_close(module.target_prompt.detach(), lab.source_vector("sst2", 0).apply_to(lab.origin(0)))
    assert not (folder / "prompts" / "attempt").exists()  # no multi-task training on the sources
    record = json.loads((folder / "prompts/transfer/imdb/attempt/seed0/shots2/attempt.json").read_text())
    assert record["settings"]["task"] == "imdb" and record["settings"]["attention_learning_rate"] is None


def test_paper_k_shot_runs_keep_the_best_checkpoint_by_validation_loss(paper_run):
    record = json.loads((paper_run[0] / "prompts/transfer/imdb/random/seed0/shots2/tpv_train.json").read_text())
    assert "eval_loss" in record["metrics"]


def test_paper_mixing_is_proportional_to_the_full_training_sets(tmp_path):
    from tpv.data.mixture import TASK_TAG
    from tpv.experiments.lab import FULL_TRAIN_SIZES, Lab

    lab = Lab(load_config("paper-smoke"), tmp_path, progress=False)
    mixed = lab.mixture(["sst2", "yelp_polarity"], seed=0)
    counts = {t: sum(e[TASK_TAG] == t for e in mixed) for t in ("sst2", "yelp_polarity")}
    assert counts["yelp_polarity"] == 16  # the larger dataset gives its whole subset
    assert counts["sst2"] == round(16 * FULL_TRAIN_SIZES["sst2"] / FULL_TRAIN_SIZES["yelp_polarity"])


def test_paper_cpu_dry_run_prints_its_plan_and_cost(tmp_path, capsys):
    summary = reproduce("paper-cpu", run_dir=tmp_path, dry_run=True)
    printed = capsys.readouterr().out
    assert "protocol 'paper'" in printed and "k-shot prompt tuning" in printed and "estimated" in printed
    assert summary["estimated_seconds"] > 3600


def test_the_run_key_covers_protocol_version_and_model(monkeypatch):
    from tpv.core import _version
    from tpv.experiments import store

    paper, tpv_config = load_config("paper-smoke"), load_config("smoke")
    assert paper.fingerprint() != tpv_config.fingerprint()
    before = tpv_config.fingerprint()
    monkeypatch.setattr(_version, "__version__", "999.0")
    assert tpv_config.fingerprint() != before
    monkeypatch.undo()
    store.model_fingerprint.cache_clear()
    monkeypatch.setattr(store, "model_fingerprint", lambda name: "other-weights")
    assert tpv_config.fingerprint() != before


def test_paper_source_prompts_keep_the_best_checkpoint_by_validation_loss(tmp_path):
    from tpv.experiments.lab import Lab

    config = load_config("paper-smoke")
    config.source.checkpoint_examples = 4
    lab = Lab(config, tmp_path, progress=False)
    lab.source_vector("sst2", 0)
    record = json.loads((tmp_path / "prompts/source/sst2/seed0/tpv_train.json").read_text())
    assert "eval_loss" in record["metrics"] and lab.trained == 1


def test_source_prompts_take_their_task_budget_and_stop_on_a_plateau(tmp_path):
    from tpv.experiments.lab import Lab

    config = load_config("paper-smoke")
    config.source.checkpoint_examples, config.source.checkpoint_metric = 4, "score"
    config.source.task_steps = {"sst2": 8}
    config.source.task_learning_rates = {"sst2": 0.07}
    config.source.early_stopping_patience = 1
    before = config.fingerprint()
    lab = Lab(config, tmp_path, progress=False)
    lab.source_vector("sst2", 0)
    record = json.loads((tmp_path / "prompts/source/sst2/seed0/tpv_train.json").read_text())
    assert record["settings"]["max_steps"] == 8 and record["settings"]["learning_rate"] == 0.07
    assert record["settings"]["callbacks"][-1]["patience"] == 1
    # train_prompt scores the kept checkpoint once more at the end, under the last step's number: keep the first.
    by_step: dict = {}
    for h in record["history"]:
        if "eval_macro_f1" in h:
            by_step.setdefault(h["step"], h["eval_macro_f1"])
    evaluated, scores = list(by_step), list(by_step.values())
    # Stopped exactly one evaluation after the last improvement (evaluations come every step here), unless the
    # improvements went on to the end of the budget.
    last_gain = max(i for i, s in enumerate(scores) if s > max(scores[:i], default=-1.0))
    assert evaluated == list(range(1, len(scores) + 1)) and len(scores) == min(8, last_gain + 2)
    assert config.source.steps_for("mnli") == config.source.steps
    assert config.source.learning_rate_for("mnli", 0.3) == 0.3
    config.source.task_steps = {"sst2": 9}
    assert config.fingerprint() != before
    moved = config.fingerprint()
    config.source.task_learning_rates = {"sst2": 0.03}
    assert config.fingerprint() != moved


def test_auto_dtype_is_keyed_as_what_it_resolves_to(monkeypatch):
    # A run folder moved from a bfloat16 machine to a float32 one must not reuse bfloat16 scores.
    config = load_config("cpu")
    assert config.model.dtype == "auto"
    monkeypatch.setenv("TPV_DTYPE", "bfloat16")
    on_bf16_machine = config.fingerprint()
    monkeypatch.setenv("TPV_DTYPE", "float32")
    on_fp32_machine = config.fingerprint()
    assert on_bf16_machine != on_fp32_machine
    assert config.model.resolved_dtype() == "float32"


def test_the_store_says_which_machine_computed_each_score(tmp_path):
    from tpv.experiments.store import UNRECORDED, ScoreStore

    path = tmp_path / "scores.json"
    old = ScoreStore(path)  # a store written before machines were recorded
    old.cached("test/sst2/a", lambda: 0.5)
    gpu = ScoreStore(path, machine={"commit": "c1", "device": "cuda", "hardware": "H200", "dtype": "bfloat16"})
    gpu.cached("test/sst2/b", lambda: 0.6)
    gpu.cached("test/sst2/c", lambda: 0.7)
    cpu = ScoreStore(path, machine={"commit": "c2", "device": "cpu", "hardware": "Xeon", "dtype": "bfloat16"})
    assert cpu.cached("test/sst2/b", lambda: 0.0) == 0.6  # resumed: not recomputed, still the GPU's
    cpu.cached("test/sst2/d", lambda: 0.8)
    found = cpu.computed_by(["test/sst2/a", "test/sst2/b", "test/sst2/c", "test/sst2/d", "never/stored"])
    assert found == [
        {"commit": "c1", "device": "cuda", "dtype": "bfloat16", "hardware": "H200", "entries": 2},
        {"machine": UNRECORDED, "entries": 1},
        {"commit": "c2", "device": "cpu", "dtype": "bfloat16", "hardware": "Xeon", "entries": 1},
    ]
    assert [list(m) for m in found][0] == ["commit", "device", "dtype", "hardware", "entries"]  # one order, always
    assert len(cpu) == 4 and "__machines__" not in cpu and cpu.touched == {"test/sst2/b", "test/sst2/d"}


def test_stores_of_two_processes_on_one_file_keep_every_key(tmp_path):
    """Shards of one run write one scores.json side by side: no key and no machine record is lost."""
    import subprocess
    import sys

    from tpv.experiments.store import ScoreStore

    path = tmp_path / "scores.json"
    code = (
        "import sys; from tpv.experiments.store import ScoreStore; "
        "store = ScoreStore(sys.argv[1], machine={'commit': sys.argv[2]}); "
        "[store.cached(f'{sys.argv[2]}/{i}', lambda i=i: i) for i in range(40)]"
    )
    writers = [subprocess.Popen([sys.executable, "-c", code, str(path), name]) for name in ("a", "b")]
    assert [writer.wait(timeout=300) for writer in writers] == [0, 0]
    store = ScoreStore(path)
    assert len(store) == 80 and all(store.get(f"{name}/{i}") == i for name in "ab" for i in range(40))
    found = store.computed_by([f"{name}/{i}" for name in "ab" for i in range(40)])
    assert sorted((m["commit"], m["entries"]) for m in found) == [("a", 40), ("b", 40)]


def test_the_paper_cpu_profile_uses_the_learnability_budgets():
    # docs/results/learnability/budgets.json is what scripts/learnability.py found on the default model; the
    # profile that runs the paper's protocol on it must train each source task as long (and at the rate) that left
    # chance there, and mark the tasks that never did.
    found = json.loads((Path(__file__).parents[1] / "docs/results/learnability/budgets.json").read_text())
    config = load_config("paper-cpu")
    tokens = str(config.prompt.num_virtual_tokens)
    checked = []
    for task in config.source.tasks:
        entry = found["budgets"].get(task, {}).get(tokens)
        if entry is None:
            continue
        checked.append(task)
        if entry["left_chance"]:
            assert config.source.steps_for(task) == entry["schedule_steps"], task
            assert config.source.learning_rate_for(task, config.prompt.learning_rate) == entry["learning_rate"], task
            assert task not in config.source.at_chance
        else:
            assert task in config.source.at_chance, task
    assert checked == config.source.tasks  # every source task has a learnability run at the profile's length


def test_source_tasks_at_chance_are_marked_on_every_page_without_rerunning(smoke_run, tmp_path):
    root, first, _ = smoke_run
    shutil.copytree(root / f"smoke-{first['fingerprint']}", tmp_path / f"smoke-{first['fingerprint']}")
    config = load_config("smoke")
    config.source.at_chance = ["sst2"]
    summary = reproduce(config, run_dir=tmp_path, progress=False)
    assert summary["fingerprint"] == first["fingerprint"] and summary["trained"] == 0  # it changes no number
    out = Path(summary["output_dir"])
    pages = {study: (out / f"{study}.md").read_text() for study in STUDIES}
    assert "| sst2† |" in pages["origin_independence"] and "| yelp_polarity |" in pages["origin_independence"]
    assert "| avg (no †) |" in pages["origin_independence"]
    assert "sst2† + yelp_polarity" in pages["pairwise_sums"] and "| sst2† |" in pages["similarity"]
    assert "sst2† (SPoT)" in pages["initialisation"] and "sst2† + yelp_polarity" in pages["few_shot"]
    for page in pages.values():
        assert "† sst2: source prompts that stayed at chance" in page
    # The average without it is yelp_polarity's own row, the only other task.
    summary_json = json.loads((out / "origin_independence.json").read_text())["summary"]
    assert summary_json["avg (no †)"]["original_mean"] == summary_json["yelp_polarity"]["original_mean"]
    assert summary_json["at_chance"] == ["sst2"]
    assert "†" not in (Path(first["output_dir"]) / "origin_independence.md").read_text()


def test_every_study_page_shows_the_papers_numbers_or_words_beside_ours(smoke_run):
    from tpv.experiments.paper_numbers import table2

    root, summary, _ = smoke_run
    out = root / f"smoke-{summary['fingerprint']}" / "results"
    page = (out / "origin_independence.md").read_text()
    # Table 1, T5-base: the paper's row for a task it has; N/A for the avg, which averages other tasks.
    assert "| 93.8 ± 0.3 | 93.2 ± 0.6 | -0.6 |" in next(
        line for line in page.splitlines() if line.startswith("| sst2 ")
    )
    assert "| 97.2 ± 0.0 | 97.1 ± 0.1* | -0.1 |" in page
    assert next(line for line in page.splitlines() if line.startswith("| avg ")).endswith("| N/A | N/A | N/A |")
    assert "T5-base" in page and "direction" in page and "statistical_signficance_tests.py" in page
    payload = json.loads((out / "origin_independence.json").read_text())
    paper = payload["summary"]["paper"]["table1"]
    assert paper["t5-base"]["yelp_polarity"]["mixed"] == {"mean": 97.1, "std": 0.1, "significant": True}
    assert paper["llama-3.1-8b-instruct"]["sst2"]["original"]["mean"] == 95.9
    expected = {"original": 93.8, "mixed": 93.2}
    assert all(r["paper_mean"] == expected[r["kind"]] for r in payload["rows"] if r["task"] == "sst2")
    # Table 2: the paper's 0/100-shot cells beside each initialisation; tpv's own λ-searched row has none.
    page = (out / "initialisation.md").read_text()
    lines = {line.split(" | ")[0]: line for line in page.splitlines() if line.startswith("| ")}
    assert "| 77.2 ± 9.6 | 89.4 ± 0.4 |" in lines["| Random"]
    assert "| 90.8 ± 0.2* | 90.8 ± 0.2 |" in lines["| sst2 + yelp_polarity (SPoT)"]
    assert "| N/A | N/A |" in lines["| sst2 + yelp_polarity (sum, λ on target validation)"]
    assert "| Paper 0 shots | Paper 100 shots |" in page and "not in the v3 text we have" in page
    paper = json.loads((out / "initialisation.json").read_text())["summary"]["paper"]["targets"]["imdb"]
    assert paper["methods"]["spot:sst2"]["100"]["mean"] == 90.2 and paper["methods"]["sum_search"] is None
    # Figures 2–4: the paper's sentences, quoted on the page and in the JSON.
    for study, words in [("similarity", "QNLI and TREC"), ("pairwise_sums", "MNLI+RTE"), ("few_shot", "SST5")]:
        assert "Paper says" in (out / f"{study}.md").read_text() and words in (out / f"{study}.md").read_text()
        says = json.loads((out / f"{study}.json").read_text())["summary"]["paper"]["says"]
        assert any(words in sentence for sentence in says)
    # The paper's "(ours)" row of Table 2 for IMDB, beside tpv's λ = 1 sum when a profile runs it.
    assert [c.format() for c in table2("imdb", "sum")] == ["90.1 ± 0.5", "90.4 ± 0.2"]


def test_the_findings_table_is_computed_from_the_study_files_beside_it(smoke_run, tmp_path):
    # The verdict rules themselves, each with a planted case of every verdict, are in tests/test_findings_rules.py.
    from tpv.experiments.findings import NOT_TESTABLE, findings

    root, summary, _ = smoke_run
    out = Path(summary["output_dir"])
    config = load_config("smoke")
    assert sorted(Path(p).name for p in summary["findings"]) == ["findings.json", "findings.md"]
    written = json.loads((out / "findings.json").read_text())["findings"]
    assert [f["study"] for f in written][:1] == ["origin_independence"] and len(written) == 9
    assert all(f["verdict"] in ("held", "not held", "inconclusive", "not testable here") for f in written)
    page = (out / "findings.md").read_text()
    assert all(f"**{f['verdict']}**" in page and f["evidence"] in page for f in written)
    # Every tested claim carries its intervals and margin in the JSON.
    tested = [f for f in written if f["verdict"] != NOT_TESTABLE]
    assert tested and all(f["intervals"] and f["margin"] for f in tested)
    assert all({"estimate", "low", "high", "n", "method"} <= set(i) for f in tested for i in f["intervals"])
    tasks = config.source.tasks
    assert [i["label"] for i in written[0]["intervals"]] == tasks

    # Results of a run with other settings (another run folder key) are not used at all.
    copy = tmp_path / "results"
    shutil.copytree(out, copy)
    page_json = json.loads((copy / "origin_independence.json").read_text())
    page_json["fingerprint"] = "other"
    (copy / "origin_independence.json").write_text(json.dumps(page_json))
    first = findings(copy, config)[0]
    assert first.verdict == NOT_TESTABLE and first.evidence.startswith("not run")

    # A cell where every generated answer of both sides matched no label decides nothing: it is named, not counted.
    init = json.loads((copy / "initialisation.json").read_text())
    target = init["rows"][0]["target"]
    before = [f for f in findings(copy, config) if f.study == "initialisation"]
    for row in init["rows"]:
        if row["target"] == target and row["shots"] == 0:
            row.update(score=0.0, invalid=10, n=10)
    (copy / "initialisation.json").write_text(json.dumps(init))
    after = [f for f in findings(copy, config) if f.study == "initialisation"]
    for was, now in zip(before, after):
        assert "Not counted" not in was.evidence
        assert now.evidence.endswith(f"Not counted, no valid answer from either side on any origin: {target} 0 shots.")
    assert f"{target} 0 shots:" in before[0].evidence and f"{target} 0 shots:" not in after[0].evidence
    assert f"{target}: " in before[1].evidence and f"{target}: " not in after[1].evidence

    # At 0 shots a higher mean inside the origins' spread is no better start: its interval spans zero.
    for row in init["rows"]:
        if row["target"] == target and row["shots"] == 0 and row["method"] in ("random", "sum", "sum_search"):
            scores = [0.3, 0.2, 0.35] if row["method"] == "random" else [0.5, 0.1, 0.3]
            row.update(score=scores[config.seeds.index(row["seed"])], invalid=0, n=10)
    (copy / "initialisation.json").write_text(json.dumps(init))
    zero_shot = [f for f in findings(copy, config) if f.study == "initialisation"][1]
    assert f"{target}: " in zero_shot.evidence and zero_shot.verdict != "held"
