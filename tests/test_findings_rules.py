"""Each verdict rule of the findings table on planted study data: every verdict it can give, from intervals."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from tpv.experiments import findings as f
from tpv.experiments.verdicts import (
    HELD,
    INCONCLUSIVE,
    NOT_HELD,
    NOT_TESTABLE,
    Interval,
    all_of,
    at_par_or_better,
    better,
    most_of,
    paired_interval,
    two_sample_interval,
)

SEEDS = (0, 1, 2)


def _iv(low, high):
    return Interval("x", (low + high) / 2, low, high, 3, "paired t")


# ---- the interval rules -------------------------------------------------------------------------------------


def test_paired_interval_is_student_t_on_the_differences():
    interval = paired_interval("d", [3.0, 5.0, 7.0], [2.0, 3.0, 4.0])  # differences 1, 2, 3
    half = stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)
    assert interval.estimate == pytest.approx(2.0)
    assert (interval.low, interval.high) == pytest.approx((2 - half, 2 + half))
    assert interval.n == 3 and interval.method == "paired t"


def test_two_sample_interval_matches_scipy():
    a, b = [0.5, 0.7, 0.6, 0.9], [0.3, 0.4, 0.2]
    interval = two_sample_interval("d", a, b)
    expected = stats.ttest_ind(a, b).confidence_interval(0.95)
    assert (interval.low, interval.high) == pytest.approx((expected.low, expected.high))


@pytest.mark.parametrize(
    ("low", "high", "verdict"),
    [
        (-0.02, 0.03, HELD),  # within the margin
        (-0.09, -0.06, NOT_HELD),  # wholly past the margin
        (-0.07, -0.01, NOT_HELD),  # a significant loss not shown to be small
        (-0.08, 0.02, INCONCLUSIVE),  # spans both −margin and zero
    ],
)
def test_at_par_or_better(low, high, verdict):
    assert at_par_or_better(_iv(low, high), 0.05) == verdict


@pytest.mark.parametrize(
    ("low", "high", "verdict"),
    [(0.01, 0.04, HELD), (-0.03, 0.02, NOT_HELD), (-0.02, 0.09, INCONCLUSIVE)],
)
def test_better(low, high, verdict):
    assert better(_iv(low, high), 0.05) == verdict


def test_combining_cells():
    assert all_of([HELD, HELD]) == HELD
    assert all_of([HELD, INCONCLUSIVE]) == INCONCLUSIVE
    assert all_of([HELD, INCONCLUSIVE, NOT_HELD]) == NOT_HELD
    assert all_of([]) == NOT_TESTABLE
    assert most_of([HELD, HELD, NOT_HELD]) == HELD
    assert most_of([HELD, NOT_HELD, NOT_HELD]) == NOT_HELD
    assert most_of([HELD, INCONCLUSIVE, NOT_HELD]) == INCONCLUSIVE  # the open pair decides "most"


# ---- Table 1: a paired test per vector ------------------------------------------------------------------------


def _table1(per_task: dict) -> dict:
    """``{task: (originals per seed, mean mixed shift per seed)}`` → origin_independence.json's rows."""
    rows = []
    for task, (original, shift) in per_task.items():
        for seed in SEEDS:
            rows.append(
                {"task": task, "vector_seed": seed, "origin_seed": seed, "kind": "original", "score": original[seed]}
            )
            others = [s for s in SEEDS if s != seed]
            # Two mixed scores a vector, spread ±0.03 around original + shift: their mean is what is tested.
            for other, noise in zip(others, (-0.03, 0.03)):
                rows.append(
                    {
                        "task": task,
                        "vector_seed": seed,
                        "origin_seed": other,
                        "kind": "mixed",
                        "score": original[seed] + shift[seed] + noise,
                    }
                )
    return {"summary": {"at_chance": []}, "rows": rows}


@pytest.mark.parametrize(
    ("shift", "verdict"),
    [((0.01, -0.01, 0.0), HELD), ((-0.20, -0.21, -0.19), NOT_HELD), ((-0.15, 0.05, -0.02), INCONCLUSIVE)],
)
def test_table1_verdict_per_vector_from_a_paired_interval(shift, verdict):
    found = f._origin_independence(_table1({"mnli": ((0.8, 0.5, 0.9), shift)}))
    assert found.verdict == verdict and found.margin.startswith("5 points")
    [interval] = found.intervals
    assert interval["method"] == "paired t" and interval["n"] == 3
    assert interval["estimate"] == pytest.approx(np.mean(shift))


def test_table1_pairs_each_vector_with_its_own_origin():
    # Originals that differ a lot between origins, shifted by the same amount: a paired test sees a tight
    # interval; six mixed against three originals as independent samples would not.
    found = f._origin_independence(_table1({"qnli": ((0.9, 0.5, 0.2), (-0.1, -0.1, -0.1))}))
    interval = found.intervals[0]
    assert interval["high"] - interval["low"] < 1e-9 and found.verdict == NOT_HELD
    assert f._origin_independence(_table1({})).verdict == NOT_TESTABLE


# ---- similarity -----------------------------------------------------------------------------------------------


def _similarity(vector_cos, prompt_cos, tasks=("mnli", "qnli", "sst2", "yelp_polarity", "dbpedia", "trec")):
    """Rows for every task pair and origin pair from ``cos(kind_table, a, b, i, j)`` functions."""
    rows = []
    for kind, cos in (("task_prompt_vectors", vector_cos), ("task_prompts", prompt_cos)):
        for a, b in itertools.product(tasks, tasks):
            for i, j in itertools.permutations(SEEDS, 2):
                rows.append(
                    {
                        "kind": kind,
                        "task_a": a,
                        "origin_a": i,
                        "task_b": b,
                        "origin_b": j,
                        "cosine": cos(a, b, min(i, j) + max(i, j)),
                    }
                )
    families = [
        {"name": "nli", "sources": ["mnli", "qnli"]},
        {"name": "sentiment", "sources": ["sst2", "yelp_polarity"]},
        {"name": "topic", "sources": ["dbpedia", "trec"]},
    ]
    return {
        "rows": rows,
        "config": {"transfer": {"families": families}},
        "summary": {"task_prompt_vectors": {"tasks": list(tasks)}},
    }


FAMILY = {"mnli": 0, "qnli": 0, "sst2": 1, "yelp_polarity": 1, "dbpedia": 2, "trec": 2}


@pytest.mark.parametrize(
    ("gap", "verdict"),
    [((0.2, 0.21, 0.19), HELD), ((0.0, 0.01, -0.01), NOT_HELD), ((-0.1, 0.2, 0.05), INCONCLUSIVE)],
)
def test_family_similarity_from_an_interval_over_origin_pairs(gap, verdict):
    def vector(a, b, key):
        return 0.3 + (gap[key - 1] if FAMILY[a] == FAMILY[b] else 0.0)

    found = f._similarity(_similarity(vector, lambda a, b, key: 0.9))[0]
    assert found.verdict == verdict and found.margin == "0.05 cosine"


def test_lower_cosines_for_vectors_names_its_construction():
    found = f._similarity(_similarity(lambda a, b, k: 0.2 + 0.01 * k, lambda a, b, k: 0.8 + 0.01 * k))[1]
    assert found.verdict == HELD and "by construction" in found.evidence
    found = f._similarity(_similarity(lambda a, b, k: 0.8, lambda a, b, k: 0.8 + (0.1, -0.1, 0.02)[k - 1]))[1]
    assert found.verdict == INCONCLUSIVE


def test_qnli_trec_is_decided_by_intervals_not_by_a_margin_of_0_002():
    # The pair sits 0.002 above the prompts' median on average, with an origin-to-origin spread of 0.04: no cliff.
    def prompt(a, b, key):
        return 0.5 + ((0.042, -0.038, 0.002)[key - 1] if {a, b} == {"qnli", "trec"} else 0.0)

    def vector(a, b, key):
        return 0.3 - (0.2 if {a, b} == {"qnli", "trec"} else 0.0)

    found = f._similarity(_similarity(vector, prompt))[2]
    assert found.verdict == INCONCLUSIVE and len(found.intervals) == 2
    clear = f._similarity(_similarity(vector, lambda a, b, k: 0.5 + (0.2 if {a, b} == {"qnli", "trec"} else 0)))[2]
    assert clear.verdict == HELD
    assert f._similarity(_similarity(vector, prompt, tasks=("mnli", "qnli", "sst2")))[2].verdict == NOT_TESTABLE


# ---- pairwise sums: the 0.90 keep rule with intervals ----------------------------------------------------------


def _pairs(relative: dict) -> dict:
    rows = [
        {"pair": pair, "task": task, "seed": seed, "relative": values[seed]}
        for (pair, task), values in relative.items()
        for seed in SEEDS
    ]
    tasks = sorted({t for pair, _ in relative for t in pair.split("+")})
    return {"summary": {"tasks": tasks}, "rows": rows}


KEPT, LOST, OPEN = (0.98, 1.0, 0.99), (0.5, 0.6, 0.55), (0.78, 0.90, 0.99)  # OPEN: mean 0.89, spread 0.78-0.99


@pytest.mark.parametrize(
    ("cells", "verdict"),
    [((KEPT, KEPT, KEPT), HELD), ((LOST, LOST, KEPT), NOT_HELD), ((KEPT, OPEN, LOST), INCONCLUSIVE)],
)
def test_pairwise_keep_rule_uses_intervals(cells, verdict):
    pairs = ["imdb+qnli", "imdb+sst2", "qnli+sst2"]
    relative = {(p, t): cell for p, cell in zip(pairs, cells) for t in p.split("+")}
    found = f._pairwise_sums(_pairs(relative), set())
    assert found.verdict == verdict and "keeps ≥ 90%" in found.margin and len(found.intervals) == 6


def test_a_mean_below_0_90_is_not_a_lost_pair_when_the_interval_reaches_it():
    found = f._pairwise_sums(_pairs({("imdb+sst2", "imdb"): OPEN, ("imdb+sst2", "sst2"): OPEN}), set())
    assert found.verdict == INCONCLUSIVE  # the old rule cut at a mean of 0.90 and said "not held"


# ---- initialisation (Table 2) and few-shot ----------------------------------------------------------------------


def _starts(cells: dict, target="snli", shots=(0,)) -> dict:
    """``{method: scores per seed}`` → initialisation/few_shot rows for one target at each shot count."""
    return {
        "rows": [
            {"target": target, "method": m, "shots": k, "seed": s, "score": v[s], "n": 10, "invalid": 0}
            for k in shots
            for m, v in cells.items()
            for s in SEEDS
        ]
    }


@pytest.mark.parametrize(
    ("sum_scores", "verdict"),
    [((0.52, 0.61, 0.70), HELD), ((0.2, 0.3, 0.4), NOT_HELD), ((0.35, 0.65, 0.60), INCONCLUSIVE)],
)
def test_sum_at_par_with_the_best_spot(sum_scores, verdict):
    data = _starts(
        {"sum": sum_scores, "spot:mnli": (0.5, 0.6, 0.7), "spot:qnli": (0.1, 0.1, 0.1), "random": (0.1, 0.2, 0.1)}
    )
    found = f._initialisation(data)[0]
    assert found.verdict == verdict and "mnli" in found.intervals[0]["label"]  # against the best SPoT


@pytest.mark.parametrize(
    ("sum_scores", "verdict"),
    [((0.5, 0.6, 0.7), HELD), ((0.1, 0.21, 0.1), NOT_HELD), ((0.05, 0.45, 0.1), INCONCLUSIVE)],
)
def test_sum_better_than_random_at_zero_shots(sum_scores, verdict):
    data = _starts({"sum": sum_scores, "spot:mnli": (0.5, 0.6, 0.7), "random": (0.1, 0.2, 0.1)})
    assert f._initialisation(data)[1].verdict == verdict


def test_a_silent_cell_is_named_not_counted():
    data = _starts({"sum": (0, 0, 0), "spot:mnli": (0, 0, 0), "random": (0, 0, 0)})
    for row in data["rows"]:
        row["invalid"] = 10
    found = f._initialisation(data)
    assert found[0].verdict == NOT_TESTABLE and found[0].evidence.endswith("snli 0 shots.")


@pytest.mark.parametrize(
    ("sst2", "verdict"),
    [((0.7, 0.8, 0.75), HELD), ((0.3, 0.31, 0.32), NOT_HELD), ((0.36, 0.62, 0.45), INCONCLUSIVE)],
)
def test_sst2_best_for_sst5_needs_an_interval_against_every_other_start(sst2, verdict):
    data = _starts(
        {"spot:sst2": sst2, "spot:yelp_polarity": (0.4, 0.5, 0.45), "sum": (0.3, 0.35, 0.4), "random": (0.2, 0.2, 0.3)},
        target="sst5",
        shots=(0, 100),
    )
    found = f._few_shot(data)[1]
    assert found.verdict == verdict and len(found.intervals) == 6


@pytest.mark.parametrize(
    ("sum_scores", "verdict"), [((0.8, 0.9, 0.85), HELD), ((0.4, 0.5, 0.45), NOT_HELD), ((0.3, 0.7, 0.6), INCONCLUSIVE)]
)
def test_sum_beats_spot_for_imdb(sum_scores, verdict):
    data = _starts(
        {"sum": sum_scores, "spot:sst2": (0.4, 0.5, 0.45), "spot:yelp_polarity": (0.3, 0.3, 0.3)},
        target="imdb",
        shots=(0, 100),
    )
    assert f._few_shot(data)[0].verdict == verdict
    assert f._few_shot(_starts({"sum": sum_scores}, target="snli"))[0].verdict == NOT_TESTABLE


def test_every_verdict_is_one_of_four_and_the_rules_are_stated():
    assert {HELD, NOT_HELD, INCONCLUSIVE, NOT_TESTABLE} == {"held", "not held", "inconclusive", "not testable here"}
    for word in ("95 % confidence interval", "margin", "inconclusive", "Not significant is never read as the same"):
        assert word in f.RULES


# ---- scripts/refresh_findings.py: new rules over older study files ---------------------------------------------


def _script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "scripts" / "refresh_findings.py"
    spec = importlib.util.spec_from_file_location("refresh_findings", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_refreshing_findings_from_older_study_files_says_they_predate_the_settings(tmp_path):
    import json

    studies = {
        "origin_independence": _table1({"sst2": ((0.8, 0.5, 0.9), (0.0, 0.01, -0.01))}),
        "similarity": _similarity(lambda a, b, k: 0.3, lambda a, b, k: 0.8),
        "pairwise_sums": _pairs({("imdb+sst2", "imdb"): KEPT, ("imdb+sst2", "sst2"): KEPT}),
        "initialisation": _starts({"sum": (0.5, 0.6, 0.7), "spot:mnli": (0.5, 0.6, 0.7), "random": (0.1, 0.2, 0.1)}),
        "few_shot": _starts({"spot:sst2": (0.7, 0.8, 0.75), "sum": (0.3, 0.35, 0.4)}, target="sst5"),
    }
    for study, payload in studies.items():
        payload.update(fingerprint="old-key", commit="abcdef0123")
        (tmp_path / f"{study}.json").write_text(json.dumps(payload))
    _script().refresh(tmp_path, "smoke")
    written = json.loads((tmp_path / "findings.json").read_text())
    assert written["fingerprint"] == "old-key" and "predate" in written["notes"][0]
    assert [f["verdict"] for f in written["findings"]][:1] == [HELD]
    assert all("not run" not in f["evidence"] for f in written["findings"])
    page = (tmp_path / "findings.md").read_text()
    assert "**These results predate the current settings of `smoke`.**" in page and "n = 10" in page
    (tmp_path / "few_shot.json").write_text(json.dumps({**studies["few_shot"], "fingerprint": "another"}))
    with pytest.raises(Exception, match="several runs"):
        _script().refresh(tmp_path, "smoke")
