"""The transfer study (tpv.experiments.studies.left_out): the transfer-smoke profile end to end on the tiny model,
its resumable cache, its refusal of a run folder with other settings, its plan, and its statistics."""

import csv
import json
import math
import re
import shutil
from pathlib import Path

import pytest

from tpv import TPVError
from tpv.experiments import load_config, reproduce
from tpv.experiments.config import ExperimentConfig, LeftOutConfig
from tpv.experiments.studies import left_out

PROFILE = "transfer-smoke"


@pytest.fixture(scope="module")
def transfer_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("transfer-runs")
    summary = reproduce(PROFILE, run_dir=root, progress=False)
    return root, summary


def _payload(summary) -> dict:
    return json.loads((Path(summary["output_dir"]) / "transfer.json").read_text())


def test_the_smoke_profile_writes_pages_csv_json_curves_and_findings(transfer_run):
    root, summary = transfer_run
    config = load_config(PROFILE)
    out = Path(summary["output_dir"])
    assert list(summary["studies"]) == ["transfer"] and summary["trained"] > 0
    page = (out / "transfer.md").read_text()
    assert page.startswith("# Starts on tasks left out of the zoo") and "git commit" in page
    for heading in ("## 0 shots (test)", "## 4-shot prompt tuning", "## What decides transfer", "## Findings"):
        assert heading in page
    # Factors the run cannot measure say so instead of being left out.
    assert "**Prompt length 20 vs 50**: not measured" in page and "**Vector quality**" in page
    payload = _payload(summary)
    assert payload["fingerprint"] == summary["fingerprint"] and payload["device"] == "cpu" and payload["commit"]
    with open(out / "transfer.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == len(payload["rows"])
    targets = payload["summary"]["targets"]
    assert list(targets) == config.left_out.targets
    for target in config.left_out.targets:
        assert (out / f"transfer_curves_{target}.png").read_bytes()[:4] == b"\x89PNG"
        found = targets[target]
        # auto_init ran with the target excluded, once per validation size and seed, and its decision is kept.
        for n in config.left_out.auto_validation:
            assert len(found["auto_init"][str(n)]) == len(config.seeds)
            assert [p["task"] for p in found["auto_init_plans"][str(n)]] == [target] * len(config.seeds)
            assert len(found["zero_shot"][f"auto_init@{n}"]) == len(config.seeds)
        assert target not in found["family_members"] and found["best_single"] != target
    # imdb's family keeps sst2 and yelp_polarity; trec has no other topic vector, so no family start.
    assert targets["imdb"]["family_members"] == ["sst2", "yelp_polarity"]
    assert "family_sum" in targets["imdb"]["kshot"]["4"] and "family_sum" not in targets["trec"]["kshot"]["4"]
    assert set(targets["imdb"]["factors"]["merge"]) == set(config.left_out.merges)
    template = targets["imdb"]["factors"]["template"]
    assert template["source"] == targets["imdb"]["best_single"] and "**Target's template vs" in page
    if "skipped" not in template:
        zero = targets["imdb"]["zero_shot"]
        # In its own template, the factor's cells are the 0-shot starts' scores (one cached score each).
        assert template["zoo_origin"]["target_template"] == zero["zoo_origin"][0]
        assert template[f"single:{template['source']}"]["target_template"] == zero["best_single"][0]
    findings = (out / "findings.md").read_text()
    assert "starts on tasks left out of the zoo" in findings and "not run" not in findings
    verdicts = {f["verdict"] for f in json.loads((out / "findings.json").read_text())["findings"]}
    assert verdicts and verdicts <= {left_out.HELD, left_out.NOT_HELD, left_out.INCONCLUSIVE, left_out.NOT_TESTABLE}


def test_curves_are_validated_every_few_steps_from_the_start_on_the_same_shots(transfer_run):
    root, summary = transfer_run
    settings = load_config(PROFILE).left_out
    runs = _payload(summary)["summary"]["targets"]["imdb"]["kshot"]["4"]
    expected = list(range(0, settings.steps + 1, settings.eval_every))
    for found in runs.values():
        assert [[step for step, _ in curve] for curve in found["curves"]] == [expected] * 2
    # Every start of a seed trained on the same k examples (the run records their hash).
    folder = Path(summary["run_dir"]) / "prompts" / "left_out" / "imdb"
    for seed in (0, 1):
        records = [json.loads(p.read_text()) for p in folder.glob(f"*/k4/seed{seed}/tpv_train.json")]
        assert len(records) >= 3  # the origin, the family sum, the best single (auto_init's may be the origin's)
        assert len({r["settings"]["train_data"] for r in records}) == 1
    # Where auto_init kept the origin, its start is the origin's, and so is its run.
    decisions = _payload(summary)["summary"]["targets"]["imdb"]["auto_init"][str(settings.kshot_auto_validation)]
    for i, decision in enumerate(decisions):
        if decision == "kept the origin":
            assert runs["auto_init"]["curves"][i] == runs["origin"]["curves"][i]
            assert runs["auto_init"]["test"][i] == runs["origin"]["test"][i]


def test_a_rerun_over_the_cache_trains_nothing_and_rewrites_the_pages_byte_for_byte(transfer_run, monkeypatch):
    import tpv.compose.auto_init as auto_init_module
    import tpv.engine.training as training

    def refuse(*args, **kwargs):
        raise AssertionError("a rerun over the cache must not compute")

    monkeypatch.setattr(training.PromptTuningTrainer, "train", refuse)
    monkeypatch.setattr(auto_init_module, "auto_init", refuse)
    root, first = transfer_run
    out = Path(first["output_dir"])
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.suffix in (".md", ".csv", ".json")}
    again = reproduce(PROFILE, run_dir=root, progress=False)
    assert again["trained"] == 0
    # Timings aside, and the commit of the code that wrote the page: in a shared working tree another commit
    # can land between the two runs (the scores' own commits, in "computed by", must not change).
    written = re.compile(
        rb'wall-clock time of this study [0-9.]+ s|"seconds": [0-9.e-]+|(git commit `|"commit": ")[0-9a-f]{40}'
    )
    for name, content in before.items():
        assert written.sub(b"", (out / name).read_bytes()) == written.sub(b"", content), name


def test_two_shards_side_by_side_fill_the_cache_and_the_full_run_computes_nothing(transfer_run, tmp_path, monkeypatch):
    """`--shard 1/2` and `--shard 2/2` run at the same time in one run folder (the tiny model, the tuned zoo
    and the score store are shared); the run without a shard then writes the pages the unsharded run wrote."""
    import subprocess
    import sys

    import tpv.compose.auto_init as auto_init_module
    import tpv.engine.training as training

    code = (
        "import sys; from tpv.experiments import reproduce; "
        "reproduce(sys.argv[1], run_dir=sys.argv[2], progress=False, shard=sys.argv[3])"
    )
    shards = [
        subprocess.Popen([sys.executable, "-c", code, PROFILE, str(tmp_path), part], stderr=subprocess.PIPE, text=True)
        for part in ("1/2", "2/2")
    ]
    for shard in shards:
        assert shard.wait(timeout=900) == 0, shard.stderr.read()

    def refuse(*args, **kwargs):
        raise AssertionError("the shards must have computed everything")

    monkeypatch.setattr(training.PromptTuningTrainer, "train", refuse)
    monkeypatch.setattr(auto_init_module, "auto_init", refuse)
    merged = reproduce(PROFILE, run_dir=tmp_path, progress=False)
    assert merged["trained"] == 0
    assert _payload(merged)["summary"] == _payload(transfer_run[1])["summary"]


@pytest.mark.parametrize(
    "profile, shard, match",
    [
        (PROFILE, "3/2", r"shard must be 'i/n' with 1 ≤ i ≤ n, e.g. '1/2', got '3/2'"),
        (PROFILE, "half", r"shard must be 'i/n'"),
        ("smoke", "0/2", r"shard must be 'i/n' with 1 ≤ i ≤ n, e.g. '1/2', got '0/2'"),
    ],
)
def test_a_bad_shard_is_one_tpverror(profile, shard, match, tmp_path):
    with pytest.raises(TPVError, match=match):
        reproduce(profile, run_dir=tmp_path, progress=False, shard=shard)
    assert not any(tmp_path.iterdir())


def test_a_run_folder_holding_other_settings_is_refused(transfer_run, tmp_path):
    root, first = transfer_run
    changed = load_config(PROFILE)
    changed.left_out.steps = 2  # another k-shot budget: every k-shot prompt folder holds a run of 4 steps
    assert changed.fingerprint() != first["fingerprint"]
    # As if a folder had been carried under the other settings' key (or its key had collided): the prompt
    # folders must refuse rather than hand back prompts trained otherwise.
    copy = tmp_path / f"{changed.name}-{changed.fingerprint()}"
    shutil.copytree(first["run_dir"], copy)
    (copy / "scores.json").unlink()
    with pytest.raises(TPVError, match="other settings"):
        reproduce(changed, run_dir=tmp_path, progress=False)


def test_the_dry_run_plans_every_part_and_writes_nothing(tmp_path, capsys):
    summary = reproduce("transfer-cpu", run_dir=tmp_path, dry_run=True, measure=False)
    printed = capsys.readouterr().out
    for work in ("score the starts at 0 shots", "auto_init at [32, 64, 200]", "k-shot prompt tuning", "factors"):
        assert work in printed
    assert summary["estimated_seconds"] > 0 and not summary["studies"]
    assert not (tmp_path / f"transfer-cpu-{summary['fingerprint']}").exists()
    k_shot = next(line for line in printed.splitlines() if "k-shot prompt tuning" in line)
    # 8 targets × 3 seeds × 4 starts, less the family start of cola and stsb (alone in their families).
    assert re.search(rf"\s90\s+{90 * 80}\s", k_shot), k_shot


def test_transfer_cpu_covers_every_family_with_eight_targets():
    from tpv.data import get_task

    config = load_config("transfer-cpu")
    settings = config.left_out
    assert len(settings.targets) >= 8 and len(config.seeds) >= 3 and settings.steps >= 80
    assert settings.eval_every == 10 and 64 in settings.shots and settings.auto_validation == [32, 64, 200]
    families = {get_task(t).family for t in settings.targets}
    assert families == {"sentiment", "topic", "nli", "paraphrase", "grammar", "similarity"}
    assert config.output_dir == "docs/results/transfer"


def test_only_profiles_that_run_the_study_key_its_settings():
    smoke = load_config("smoke")
    key = smoke.fingerprint()
    smoke.left_out = LeftOutConfig(targets=["trec"], steps=7)
    assert smoke.fingerprint() == key
    transfer = load_config(PROFILE)
    key = transfer.fingerprint()
    # Fewer targets share the run folder (a study run in chunks, target by target); another budget does not.
    transfer.left_out.targets = ["trec"]
    assert transfer.fingerprint() == key
    transfer.left_out.steps = 7
    assert transfer.fingerprint() != key


@pytest.mark.parametrize(
    "table, match",
    [
        ({"sources": "hub"}, "'left_out.sources' = 'hub'"),
        ({"sources": "tuned", "candidates": ["sst2", "imdb"], "targets": ["trec"]}, r"\['trec'\] are not candidates"),
        ({"candidates": ["sst2", "imdb"]}, "the shipped zoo has its own tasks"),
        ({"kshot_starts": ["family_sum"]}, "include 'origin'"),
        ({"kshot_auto_validation": 50}, "use one of left_out.auto_validation"),
        ({"merges": ["magic"]}, "'left_out.merges'"),
        ({"scales": [0.0]}, "'left_out.scales'"),
    ],
)
def test_bad_settings_name_the_key(table, match):
    with pytest.raises(TPVError, match=match):
        LeftOutConfig(**table)


def test_shots_beyond_the_training_data_are_refused():
    with pytest.raises(TPVError, match="'left_out.shots' = 64"):
        ExperimentConfig(studies=["transfer"], data={"train_examples": 32})


def test_interval_verdict_and_steps_to_reach():
    mean, low, high = left_out.interval([0.1, 0.2, 0.3])
    # Student's t with 2 degrees of freedom: 4.303 × 0.1 / √3.
    assert mean == pytest.approx(0.2) and high - mean == pytest.approx(4.3027 * 0.1 / math.sqrt(3), rel=1e-4)
    assert math.isnan(left_out.interval([0.5])[1])
    assert left_out.verdict([0.1, 0.11, 0.12]) == left_out.HELD
    assert left_out.verdict([-0.1, -0.11, -0.12]) == left_out.NOT_HELD
    assert left_out.verdict([-0.1, 0.0, 0.12]) == left_out.INCONCLUSIVE
    assert left_out.verdict([0.3]) == left_out.INCONCLUSIVE  # one seed: no interval, no claim
    curve = [[0, 0.2], [10, 0.5], [20, 0.7]]
    assert left_out.steps_to_reach(curve, 0.5) == 10 and left_out.steps_to_reach(curve, 0.8) is None


def test_auto_init_below_the_origin_is_flagged_not_held():
    summary = {
        "targets": {
            "sst2": {
                "zero_shot": {"origin": [0.80, 0.82, 0.81], "auto_init@64": [0.70, 0.73, 0.71]},
                "kshot": {},
            }
        }
    }
    config = load_config("transfer-cpu")
    config.left_out.auto_validation = [64]
    row, acceptance, average = left_out.transfer_findings(summary, config)
    assert row["verdict"] == left_out.NOT_HELD and row["difference"].startswith("-9.7 [")
    assert acceptance["verdict"] == left_out.NOT_HELD and acceptance["difference"] == "significantly below on: sst2"
    assert average["difference"] == "-9.7"  # one target: no interval over targets, so no claim against it
    summary["targets"]["sst2"]["zero_shot"]["auto_init@64"] = [0.80, 0.82, 0.81]  # kept the origin
    assert [f["verdict"] for f in left_out.transfer_findings(summary, config)] == [left_out.HELD] * 3
    # A harm each target's three seeds cannot show, but all targets' seeds together do.
    summary["targets"] = {
        t: {"zero_shot": {"origin": [0.80, 0.60, 0.70], "auto_init@64": [0.78 - e, 0.57, 0.69]}, "kshot": {}}
        for t, e in (("sst2", 0.0), ("trec", 0.01), ("rte", 0.02), ("cola", 0.005))
    }
    found = left_out.transfer_findings(summary, config)
    assert [f["verdict"] for f in found[:4]] == [left_out.HELD] * 4  # no target alone is significantly below
    assert found[-2]["verdict"] == left_out.HELD and found[-1]["verdict"] == left_out.NOT_HELD


def test_an_auto_init_run_that_is_the_origins_is_not_compared_with_it():
    origin_runs = {"curves": [[[0, 0.2], [10, 0.5]]] * 3, "test": [0.5, 0.6, 0.7], "steps_to_origin_best": [10] * 3}
    summary = {
        "targets": {
            "trec": {
                "zero_shot": {"origin": [0.2, 0.3, 0.25], "auto_init@64": [0.2, 0.3, 0.25]},
                "kshot": {"64": {"origin": origin_runs, "auto_init": dict(origin_runs)}},
            }
        }
    }
    config = load_config("transfer-cpu")
    config.left_out.auto_validation = [64]
    zero, kshot, *_ = left_out.transfer_findings(summary, config)
    assert zero["verdict"] == left_out.HELD and zero["difference"].startswith("0 everywhere")
    assert kshot["verdict"] == left_out.NOT_TESTABLE and "runs are the origin's" in kshot["difference"]
    # A start built on the zoo origin has one score whatever the seed: no interval of zero width.
    assert left_out.cell([0.86, 0.86, 0.86]) == "86.0" and left_out.cell([0.8, 0.9]).startswith("85.0 [")
    assert left_out.cell([0.19695652173913042] * 3) == "19.7"  # equal values: no interval, not a rounding error's


def test_factor_rows_compare_levels_over_the_targets():
    # Each target's zoo-origin score is one value per level: planted so that λ = 0.5 beats λ = 1 on every target
    # (held), the mean loses to the sum on every target (not held), and TIES is a coin flip (inconclusive).
    def factors(gain: float, loss: float, flip: float) -> dict:
        return {
            "scale": {"0.5": 0.60 + gain, "1": 0.60},
            "merge": {"sum": 0.50, "mean": 0.50 - loss, "ties": 0.50 + flip},
            "quality": {"learned": {"test": 0.7}, "at chance": {"test": 0.7 - gain}},
            "origin": {"zoo": 0.5, "fresh": [0.5, 0.5, 0.5]},
            "template": {"skipped": "different numbers of input fields"},
        }

    summary = {
        "targets": {
            t: {"zero_shot": {"origin": [0.5] * 3}, "kshot": {}, "factors": factors(*levels)}
            for t, levels in (("sst2", (0.10, 0.05, 0.2)), ("trec", (0.12, 0.06, -0.2)), ("rte", (0.08, 0.04, 0.1)))
        }
    }
    config = load_config("transfer-cpu")
    config.left_out.auto_validation, config.left_out.scales = [], [0.5, 1.0]
    config.left_out.merges = ["sum", "mean", "ties"]
    found = {f["claim"].split(" (")[0]: f for f in left_out.transfer_findings(summary, config)}
    assert found["λ = 0.5 beats λ = 1"]["verdict"] == left_out.HELD
    assert found["λ = 0.5 beats λ = 1"]["difference"].startswith("+10.0 [")
    assert found["mean beats the plain sum of the family's vectors"]["verdict"] == left_out.NOT_HELD
    assert found["ties beats the plain sum of the family's vectors"]["verdict"] == left_out.INCONCLUSIVE
    assert found["the best learned zoo vector beats the best at-chance one"]["verdict"] == left_out.HELD
    assert found["the family sum"]["difference"] == "+0.0 [+0.0, +0.0]"  # the same score on every origin
    assert not any("template" in claim for claim in found)  # no target with a comparable template: no row
    assert {f["target"] for f in found.values()} == {"average of 3 targets"}


def test_the_shipped_zoo_gives_each_target_its_family_without_itself(tmp_path):
    from tpv.compose import zoo
    from tpv.experiments.lab import Lab

    lab = Lab(load_config("transfer-cpu"), tmp_path / "run", progress=False)
    found = left_out.load_zoo(lab)  # the shipped files only: no model is loaded
    assert found.origin.num_virtual_tokens == 20 and set(found.vectors) == set(zoo.manifest()["tasks"])
    assert left_out.family_members(found, "sst2") == ["imdb", "sst5", "yelp_polarity"]
    assert left_out.family_members(found, "cola") == [] and "cola" not in left_out.candidates(found, "cola")
    assert {"rte", "cola"} <= found.at_chance and "sst2" not in found.at_chance
    members = left_out.family_members(found, "sst2")
    total = left_out.combination(found, members)
    matched = left_out.combination(found, members, "norm_matched")
    mean_norm = sum(found.vectors[m].norm() for m in members) / len(members)
    assert matched.norm() == pytest.approx(mean_norm, rel=1e-4) and matched.cosine(total) == pytest.approx(
        1.0, abs=1e-5
    )
    assert left_out.combination(found, members, "mean").norm() == pytest.approx(total.norm() / 3, rel=1e-4)


def test_a_target_in_a_source_template_keeps_its_fields_and_label_words():
    from tpv.data import get_task

    imdb, sst2, mrpc, qqp = (get_task(t) for t in ("imdb", "sst2", "mrpc", "qqp"))
    variant = left_out.in_template_of(imdb, sst2)
    assert variant.template == "sentence: {text}\nsentiment:" and variant.label_words == imdb.label_words
    assert variant.input_text({"text": "fine film", "label": 1}) == "sentence: fine film\nsentiment:"
    pair = left_out.in_template_of(mrpc, qqp)
    assert pair.fields == mrpc.fields and pair.template.startswith("question1: {" + mrpc.fields[0] + "}")
    assert left_out.in_template_of(imdb, qqp) is None  # one field against two: no mapping
