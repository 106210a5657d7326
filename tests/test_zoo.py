"""The vector zoo shipped in tpv/compose/zoo: every vector loads, fits the default model, and its manifest holds."""

import hashlib

import pytest

from tpv import TaskPromptVector, TPVError, zoo
from tpv.bridge.models import DEFAULT_MODEL

# SmolLM2-135M: 576-dimensional token embeddings; the zoo uses 20 virtual tokens.
DEFAULT_TOKEN_DIM = 576


def test_every_zoo_vector_loads_and_matches_the_default_models_shape():
    manifest = zoo.manifest()
    assert manifest["base_model"] == DEFAULT_MODEL
    tokens = manifest["origin"]["num_virtual_tokens"]
    rows = zoo.available()
    assert rows, "the zoo is empty"
    for row in rows:
        vector = zoo.load(row["task"])
        assert vector.shape == (tokens, DEFAULT_TOKEN_DIM)
        assert vector.tasks == {row["task"]: 1.0}
        assert vector.base_model == DEFAULT_MODEL
        assert vector.norm() == pytest.approx(row["norm"], rel=1e-5)
        data = (zoo.ZOO_DIR / row["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["file_sha256"]
        assert isinstance(vector, TaskPromptVector)  # the public class, with from_pretrained and push_to_hub
    origin = zoo.origin()
    assert origin.shape == (tokens, DEFAULT_TOKEN_DIM) and origin.recipe == manifest["origin"]["recipe"]
    assert manifest["total_bytes"] == sum((zoo.ZOO_DIR / row["file"]).stat().st_size for row in rows)


def test_the_manifest_records_how_each_vector_was_made():
    manifest = zoo.manifest()
    for key in ("commit", "dtype", "cpu", "budget_note", "at_chance_rule", "command"):
        assert manifest[key], key
    # Every planned task is either built or listed as pending, never silently missing.
    assert sorted(zoo.pending() + list(manifest["tasks"])) == sorted(manifest["planned"])
    for row in zoo.available():
        assert set(row["data_sha256"]) == {"train", "validation", "test"}
        assert 0 < row["steps"] <= row["budget"] and -1 <= row["validation"] <= 1
        assert isinstance(row["at_chance"], bool)
        # The at_chance flag follows the stated rule (scripts/learnability.py) from the recorded test.
        left = row["p_value"] < 0.01 and row["margin_over_chance"] >= 0.05
        assert row["at_chance"] == (not left)
        assert row["margin_over_chance"] == pytest.approx(row["validation"] - row["chance_level"])
        assert "0.01" in manifest["at_chance_rule"] and "0.05" in manifest["at_chance_rule"]


def test_available_prints_a_table_and_filters_at_chance_vectors():
    table = zoo.available()
    text = str(table)
    assert text.splitlines()[0].split()[:3] == ["task", "family", "steps"]
    assert all(row["task"] in text for row in table)
    kept = zoo.available(include_at_chance=False)
    assert [row["task"] for row in kept] == [row["task"] for row in table if not row["at_chance"]]
    first = table[0]["task"]
    assert first not in zoo.vectors(exclude=[first], include_at_chance=True)


def test_unknown_zoo_names_raise_one_tpverror():
    with pytest.raises(TPVError, match=r"the zoo has no vector for 'nope'; it has \["):
        zoo.load("nope")
    with pytest.raises(TPVError, match=r"cannot exclude \['nope'\]: not in the zoo"):
        zoo.vectors(exclude=["nope"])


@pytest.mark.slow
def test_manifest_scores_are_re_obtained_on_a_sample():
    """Re-score two zoo vectors on the manifest's validation examples: same data and model → the same score within
    noise, in the dtype this machine runs (bfloat16 on a CPU without AMX is tens of times slower than float32)."""
    from tpv import init_prompt_tuning
    from tpv.bridge.models import load_model
    from tpv.data import load_split
    from tpv.engine.evaluation import evaluate

    model, tokenizer = load_model(dtype="auto")
    peft_model = init_prompt_tuning(model, origin=zoo.origin())
    # One vector of the first build and, where the zoo has them, one rebuilt in another dtype on another CPU.
    available = zoo.available()
    rows = [row for row in available if row["task"] == "sst2"]
    rows += [row for row in available if row.get("dtype", "bfloat16") != rows[0].get("dtype", "bfloat16")][:1]
    for row in rows:
        # The held validation examples: the ones after the checkpoint-selection set.
        start = row["selection_examples"]
        examples = load_split(row["task"], "validation")[start : start + row["validation_examples"]]
        prompt = zoo.load(row["task"]).apply_to(zoo.origin())
        score = evaluate(
            peft_model, tokenizer, row["task"], examples, prompt=prompt, max_length=row["max_length"], max_new_tokens=6
        )[row["metric"]]
        # Within noise: 2 paired-bootstrap SEs of the manifest's margin (kernels may differ across CPUs).
        assert score == pytest.approx(row["validation"], abs=max(2 * row["margin_over_origin"]["se"], 0.02))


# ---- build_zoo: a zoo for any model --------------------------------------------------------------------------

import json  # noqa: E402

from conftest import toy_examples  # noqa: E402
from tpv.compose.zoo.build import BUDGETS_FILE, TaskBudget, budget_for, build_zoo  # noqa: E402

BUILD = {
    "num_virtual_tokens": 4,
    "selection_examples": 16,
    "held_examples": 32,
    "test_examples": 16,
    "eval_every": 3,
    "base_model": "tiny-llama",
    "progress": False,
}


def _tiny(**overrides):
    from tpv.experiments.tiny import tiny_llama

    return tiny_llama(initializer_range=0.5, **overrides)


@pytest.fixture
def toy_tasks(tmp_path):
    """Two toy tasks with train/validation/test files in a data folder of their own."""
    from tpv.data import Task

    for number, name in enumerate(("toy_a", "toy_b")):
        for split, count in (("train", 64), ("validation", 48), ("test", 16)):
            rows = toy_examples(count, seed=10 * number + len(split))
            (tmp_path / "data" / name).mkdir(parents=True, exist_ok=True)
            (tmp_path / "data" / name / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks = [Task(name, "sentiment", "text: {text} label:", ("negative", "positive")) for name in ("toy_a", "toy_b")]
    return tasks, tmp_path / "data"


def test_build_zoo_writes_vectors_and_the_shipped_manifest_format(toy_tasks, word_tokenizer, tmp_path):
    tasks, data = toy_tasks
    budgets = {"toy_a": {"steps": 6}, "toy_b": TaskBudget(steps=4, learning_rate=0.1)}
    folder = tmp_path / "zoo"
    manifest = build_zoo(_tiny(), tasks, folder, tokenizer=word_tokenizer, budgets=budgets, data_dir=data, **BUILD)
    assert manifest == json.loads((folder / "manifest.json").read_text())
    assert manifest["base_model"] == "tiny-llama" and sorted(manifest["tasks"]) == ["toy_a", "toy_b"]
    shipped = zoo.manifest()
    assert set(shipped) - {"commit_note", "updates"} <= set(manifest)
    for name, entry in manifest["tasks"].items():
        assert set(next(iter(shipped["tasks"].values()))) - {"run"} <= set(entry)
        vector = TaskPromptVector.load(folder / entry["file"])
        assert vector.shape == (4, 16) and vector.tasks == {name: 1.0} and vector.base_model == "tiny-llama"
        assert 0 < entry["steps"] <= entry["budget"] == budgets_steps(budgets[name])
        left = entry["p_value"] < 0.01 and entry["margin_over_chance"] >= 0.05
        assert entry["at_chance"] == (not left)
        assert entry["validation_examples"] == 32 and entry["test_examples"] == 16
    assert manifest["tasks"]["toy_b"]["learning_rate"] == 0.1
    # The folder is a zoo auto_init takes, and its origin is the one every vector was tuned from.
    assert zoo.read_manifest(folder)["origin"]["num_virtual_tokens"] == 4
    from tpv.compose.auto_init import load_sources

    assert set(load_sources(folder, include_at_chance=True)) == {"toy_a", "toy_b"}


def budgets_steps(budget) -> int:
    return budget["steps"] if isinstance(budget, dict) else budget.steps


def test_a_rerun_keeps_finished_tasks_and_rebuilds_a_changed_one(toy_tasks, word_tokenizer, tmp_path, monkeypatch):
    import tpv.compose.tuning as tuning

    tasks, data = toy_tasks
    folder = tmp_path / "zoo"
    options = {"tokenizer": word_tokenizer, "data_dir": data, **BUILD}
    first = build_zoo(_tiny(), tasks, folder, budgets={"toy_a": {"steps": 3}, "toy_b": {"steps": 3}}, **options)
    trained = []
    real = tuning.tune_prompt
    monkeypatch.setattr(tuning, "tune_prompt", lambda *a, **k: trained.append(a[2].name) or real(*a, **k))
    again = build_zoo(_tiny(), tasks, folder, budgets={"toy_a": {"steps": 3}, "toy_b": {"steps": 3}}, **options)
    assert trained == [] and again["tasks"] == first["tasks"]
    changed = build_zoo(_tiny(), tasks, folder, budgets={"toy_a": {"steps": 3}, "toy_b": {"steps": 4}}, **options)
    assert trained == ["toy_b"] and changed["tasks"]["toy_a"] == first["tasks"]["toy_a"]
    assert changed["tasks"]["toy_b"]["budget"] == 4


def test_a_zoo_for_another_model_shape_is_refused_by_auto_init(toy_tasks, word_tokenizer, tmp_path):
    from tpv import auto_init

    tasks, data = toy_tasks
    folder = tmp_path / "zoo"
    build_zoo(
        _tiny(), tasks[:1], folder, tokenizer=word_tokenizer, budgets={"toy_a": {"steps": 2}}, data_dir=data, **BUILD
    )
    wider = _tiny(hidden_size=32, intermediate_size=64)
    validation = toy_examples(8)
    with pytest.raises(
        TPVError, match=r"the zoo in '.*zoo' was built for 'tiny-llama': its vectors have shape \(4, 16\)"
    ):
        auto_init(
            wider, word_tokenizer, tasks[0], folder, validation=validation, include_at_chance=True, progress=False
        )


@pytest.mark.parametrize(
    "options, message",
    [
        ({"tasks": []}, r"tasks must be a non-empty list"),
        ({"tasks": ["toy_a", "toy_a"]}, r"tasks name one task twice"),
        ({"budgets": {"nope": {"steps": 2}}}, r"budgets for \['nope'\], which are not in tasks"),
        ({"budgets": {"toy_a": {"stepz": 2}}}, r"budget of 'toy_a' has unknown fields \['stepz'\]"),
        ({"budgets": {"toy_a": {"steps": 0}}}, r"TaskBudget.steps must be a positive int, got 0"),
        ({"tokenizer": None}, r"build_zoo got a loaded model but no tokenizer"),
        ({"held_examples": 1}, r"held_examples must be an int ≥ 2, got 1"),
    ],
)
def test_bad_build_input_is_one_tpverror(toy_tasks, word_tokenizer, tmp_path, options, message):
    tasks, data = toy_tasks
    kwargs = {"tasks": tasks, "tokenizer": word_tokenizer, "data_dir": data, **BUILD, **options}
    with pytest.raises(TPVError, match=message):
        build_zoo(_tiny(), output_dir=tmp_path / "zoo", **kwargs)


def test_default_budgets_are_the_learnability_studys():
    # The package carries a copy (docs/ is not installed); it must be the study's file.
    from pathlib import Path

    study = Path(__file__).resolve().parents[1] / "docs" / "results" / "learnability" / "budgets.json"
    assert json.loads(BUDGETS_FILE.read_text()) == json.loads(study.read_text())
    table = json.loads(study.read_text())["budgets"]
    for task, lengths in table.items():
        budget = budget_for(task, 20)
        chosen = [run for run in lengths.values() if run["left_chance"]] or list(lengths.values())
        assert (budget.steps, budget.learning_rate) in {(r["schedule_steps"], r["learning_rate"]) for r in chosen}
    assert budget_for("a_task_nobody_measured") == TaskBudget()


def test_update_zoo_keeps_the_better_vector_and_every_run_tried(toy_tasks, word_tokenizer, tmp_path):
    """scripts/update_zoo.py: a rebuild with larger budgets replaces a vector only by the stated rule."""
    import subprocess
    import sys
    from pathlib import Path

    from tpv import make_origin
    from tpv.compose.zoo.build import ORIGIN_FILE

    tasks, data = toy_tasks
    options = {"tokenizer": word_tokenizer, "data_dir": data, **BUILD}
    old = build_zoo(_tiny(), tasks, tmp_path / "zoo", budgets={"toy_a": {"steps": 1}, "toy_b": {"steps": 1}}, **options)
    for entry in old["tasks"].values():  # as the shipped zoo: provenance only at the top of the manifest
        for key in ("cpu", "torch", "commit"):
            del entry[key]
    (tmp_path / "zoo" / "manifest.json").write_text(json.dumps(old))
    budgets = {"toy_a": {"steps": 9, "learning_rate": 0.3}, "toy_b": {"steps": 9, "learning_rate": 0.3}}
    new = build_zoo(_tiny(), tasks, tmp_path / "rebuilt", budgets=budgets, **options)
    script = Path(__file__).resolve().parents[1] / "scripts" / "update_zoo.py"
    command = [sys.executable, str(script), "--from", str(tmp_path / "rebuilt"), "--zoo", str(tmp_path / "zoo")]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    updated = json.loads((tmp_path / "zoo" / "manifest.json").read_text())
    for name in ("toy_a", "toy_b"):
        before, rebuilt, entry = old["tasks"][name], new["tasks"][name], updated["tasks"][name]
        replace = (before["at_chance"] and not rebuilt["at_chance"]) or (
            not before["at_chance"] and not rebuilt["at_chance"] and rebuilt["validation"] > before["validation"]
        )
        assert entry["file_sha256"] == (rebuilt if replace else before)["file_sha256"], name
        assert hashlib.sha256((tmp_path / "zoo" / entry["file"]).read_bytes()).hexdigest() == entry["file_sha256"]
        assert [run["budget"] for run in entry["tried"]] == [1, 9]
        assert entry["cpu"] and entry["commit"] and entry["dtype"]
        assert name in done.stdout
    assert updated["updates"][-1]["tasks"] == ["toy_a", "toy_b"]
    # A rebuild from another origin is refused in one line, and nothing is written.
    other = tmp_path / "other"
    build_zoo(
        _tiny(), tasks[:1], other, budgets={"toy_a": {"steps": 1}}, origin=make_origin(_tiny(), 4, seed=5), **options
    )
    assert (other / ORIGIN_FILE).is_file()
    refused = subprocess.run([*command[:3], str(other), *command[4:]], capture_output=True, text=True)
    assert refused.returncode == 2 and "was built from another origin" in refused.stderr
    assert json.loads((tmp_path / "zoo" / "manifest.json").read_text()) == updated
