"""Metrics against scikit-learn, scipy and rouge_score, on fixed and generated inputs."""

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.stats import pearsonr
from sklearn.metrics import accuracy_score, f1_score

from tpv.core.errors import TPVError
from tpv.data import METRIC_NAMES, TASKS
from tpv.engine.metrics import (
    METRICS,
    accuracy,
    binary_f1,
    compute_metric,
    exact_match,
    macro_f1,
    pearson,
    rouge_l,
    squad_f1,
)

label_pairs = st.integers(1, 60).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(-1, 4), min_size=n, max_size=n), st.lists(st.integers(0, 4), min_size=n, max_size=n)
    )
)


def test_fixed_classification():
    predictions, references = [0, 1, 2, 2, 1, 0, -1], [0, 1, 1, 2, 2, 0, 1]
    assert macro_f1(predictions, references) == pytest.approx(f1_score(references, predictions, average="macro"))
    assert macro_f1(predictions, references, labels=[0, 1, 2]) == pytest.approx(
        f1_score(references, predictions, average="macro", labels=[0, 1, 2])
    )
    assert accuracy(predictions, references) == pytest.approx(accuracy_score(references, predictions))


@settings(max_examples=200, deadline=None)
@given(label_pairs)
def test_macro_f1_and_accuracy_match_sklearn(pair):
    predictions, references = pair
    assert macro_f1(predictions, references) == pytest.approx(
        f1_score(references, predictions, average="macro", zero_division=0.0)
    )
    assert macro_f1(predictions, references, labels=[0, 1, 2, 3, 4]) == pytest.approx(
        f1_score(references, predictions, average="macro", labels=[0, 1, 2, 3, 4], zero_division=0.0)
    )
    assert accuracy(predictions, references) == pytest.approx(accuracy_score(references, predictions))


binary_pairs = st.integers(1, 60).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(-1, 1), min_size=n, max_size=n), st.lists(st.integers(0, 1), min_size=n, max_size=n)
    )
)


@settings(max_examples=200, deadline=None)
@given(binary_pairs)
def test_binary_f1_is_the_official_codes_f1(pair):
    # The official metrics.f1 (task-prompt-vectors@3866c35): invalid predictions become the reverse of their
    # reference (binary_reverse), then sklearn's binary F1 of labels[1].
    predictions, references = pair
    reversed_invalid = [p if p in (0, 1) else 1 - r for p, r in zip(predictions, references)]
    assert binary_f1(predictions, references) == pytest.approx(
        f1_score(references, reversed_invalid, labels=[0, 1], pos_label=1, zero_division=0.0)
    )


def test_binary_f1_counts_invalid_answers_wrong_and_rejects_multiclass():
    assert binary_f1([-1, -1], [1, 0]) == 0.0  # an invalid answer is a miss on a positive, a false alarm on a negative
    assert binary_f1([1, 0], [1, 0]) == 1.0
    with pytest.raises(TPVError, match="macro_f1"):
        binary_f1([0, 2], [0, 2])


def test_macro_f1_on_strings():
    assert macro_f1(["a", "b", "b"], ["a", "a", "b"]) == pytest.approx(
        f1_score(["a", "a", "b"], ["a", "b", "b"], average="macro")
    )


floats = st.floats(-100, 100, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(2, 40).flatmap(
        lambda n: st.tuples(st.lists(floats, min_size=n, max_size=n), st.lists(floats, min_size=n, max_size=n))
    )
)
def test_pearson_matches_scipy(pair):
    x, y = pair
    # scipy is unstable in the near-constant case too; compare only where the spread is meaningful.
    assume(np.std(x) >= 1e-3 and np.std(y) >= 1e-3)
    assert pearson(x, y) == pytest.approx(pearsonr(x, y)[0], abs=1e-9)


def test_pearson_fixed_and_edge_cases():
    x, y = [0.0, 1.2, 3.8, 5.0, 2.2], [0.4, 1.0, 4.0, 4.6, 2.8]
    assert pearson(x, y) == pytest.approx(pearsonr(x, y)[0])
    assert pearson([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]) == 0.0
    with pytest.raises(TPVError, match=r"finite numbers; got NaN/inf at positions \[1\]"):
        pearson([1.0, math.nan, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(TPVError, match="at least 2 pairs, got 1"):
        pearson([1.0], [1.0])


def test_squad_scores_follow_the_official_script():
    # Values worked out by hand with the SQuAD v2 evaluation script's normalisation.
    assert exact_match(["The Eiffel Tower!"], [["eiffel tower", "the tower"]]) == 1.0
    assert squad_f1(["the big red cat"], [["a big cat"]]) == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    assert squad_f1(["Paris"], [["London", "in Paris"]]) == pytest.approx(2 * 1 * 0.5 / 1.5)
    # Unanswerable: both the empty list and tpv's no-answer word stand for SQuAD's "".
    assert exact_match(["unanswerable", "", "Paris"], [[], {"text": [], "answer_start": []}, []]) == pytest.approx(
        2 / 3
    )
    assert squad_f1(["Paris"], ["unanswerable"]) == 0.0
    assert squad_f1(["an"], ["the"]) == 1.0  # both normalise to no answer


def _reference_lcs(a, b):
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


def test_rouge_l_fixed():
    assert rouge_l(["a b c d"], ["a b c d"]) == 1.0
    assert rouge_l(["x y"], ["a b"]) == 0.0
    # LCS("the cat sat on mat", "the cat is on the mat") = "the cat on mat" = 4; P=4/5, R=4/6.
    assert rouge_l(["The cat sat on mat."], ["the cat is on the mat"]) == pytest.approx(
        2 * 0.8 * (4 / 6) / (0.8 + 4 / 6)
    )
    assert rouge_l(["", "a"], ["a", "a"]) == 0.5


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from("abcde"), max_size=12), st.lists(st.sampled_from("abcde"), min_size=1, max_size=12))
def test_rouge_l_matches_full_lcs_table(a, b):
    lcs = _reference_lcs(a, b)
    expected = 0.0 if lcs == 0 else 2 * (lcs / len(a)) * (lcs / len(b)) / (lcs / len(a) + lcs / len(b))
    assert rouge_l([" ".join(a)], [" ".join(b)]) == pytest.approx(expected)


# Words that repeat (so long common subsequences occur), in any case, between punctuation, digits and non-ASCII.
rouge_texts = st.lists(
    st.sampled_from(
        [
            "the",
            "The",
            "cat",
            "CAT",
            "sat",
            "on",
            "a",
            "mat",
            "42",
            "x1",
            "é",
            "naïve",
            "don't",
            "--",
            ".",
            ",",
            "!",
            "(b)",
            "a-b",
            "",
        ]
    ),
    max_size=15,
).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(rouge_texts, rouge_texts), min_size=1, max_size=4))
def test_rouge_l_matches_the_rouge_score_package(pairs):
    from rouge_score.rouge_scorer import RougeScorer

    scorer = RougeScorer(["rougeL"], use_stemmer=False)
    predictions, references = [p for p, _ in pairs], [r for _, r in pairs]
    expected = np.mean([scorer.score(target=r, prediction=p)["rougeL"].fmeasure for p, r in pairs])
    assert rouge_l(predictions, references) == pytest.approx(expected, abs=1e-12)


def test_rouge_l_matches_rouge_score_on_sentences():
    from rouge_score.rouge_scorer import RougeScorer

    prediction, reference = "The police killed the gunman.", "Police kill the gunman, the police said!"
    expected = RougeScorer(["rougeL"]).score(reference, prediction)["rougeL"].fmeasure
    assert 0.3 < expected < 1.0 and rouge_l([prediction], [reference]) == pytest.approx(expected)


def test_registry_and_errors():
    assert set(METRICS) == set(METRIC_NAMES)
    assert {t.metric for t in TASKS.values()} <= set(METRICS)
    assert compute_metric("macro_f1", [0, 1], [0, 1], labels=[0, 1]) == 1.0
    with pytest.raises(TPVError, match=r"unknown metric 'f1'; known metrics: macro_f1, accuracy"):
        compute_metric("f1", [0], [0])
    with pytest.raises(TPVError, match="got 2 predictions but 1 references"):
        accuracy([0, 1], [0])
    with pytest.raises(TPVError, match="cannot score 0 predictions"):
        rouge_l([], [])


def test_metrics_import_no_sklearn_or_scipy():
    import subprocess
    import sys

    code = "import sys, tpv.engine.metrics; print(any(m in sys.modules for m in ('sklearn', 'scipy')))"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )
