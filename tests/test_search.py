"""λ search: it finds the best scale of known score functions and reads validation data only."""

import json

import numpy as np
import pytest
import torch

import tpv.compose.search
from tpv import TaskPromptVector, TPVError, get_prompt, init_prompt_tuning, make_origin
from tpv.compose.search import ScaleSearch, evaluation_score_fn, search_scale, validation_data
from tpv.data import get_task, load_split


def _vector(shape=(4, 16)):
    return TaskPromptVector(torch.ones(*shape), tasks={"a": 1.0})


def test_finds_the_maximum_of_a_known_score_function():
    result = search_scale(_vector(), torch.zeros(4, 16), lambda p: -((p.mean().item() - 0.35) ** 2), progress=False)
    assert isinstance(result, ScaleSearch)
    assert result.best_scale == 0.35 and result.best_score == pytest.approx(0.0, abs=1e-12)
    assert [point[0] for point in result.curve] == [round(x, 2) for x in np.arange(0, 1.05, 0.05)]
    assert result.curve[0][2] == {"score": pytest.approx(-(0.35**2))}


def test_mean_and_min_aggregate_per_task_scores():
    def score_fn(prompt):
        scale = prompt.mean().item()
        return {"a": 1 - abs(scale - 0.2), "b": 1 - 2 * abs(scale - 0.8)}

    by_mean = search_scale(_vector(), torch.zeros(4, 16), score_fn, progress=False)
    by_min = search_scale(_vector(), torch.zeros(4, 16), score_fn, aggregate="min", progress=False)
    assert (by_mean.best_scale, by_mean.best_score) == (0.8, pytest.approx(0.7))
    assert (by_min.best_scale, by_min.best_score) == (0.6, pytest.approx(0.6))
    assert set(by_mean.curve[3][2]) == {"a", "b"}


def test_ties_go_to_the_smaller_scale_whatever_the_grid_order():
    result = search_scale(_vector(), torch.zeros(4, 16), lambda p: 0.5, grid=[1.0, 0.5, 0.25], progress=False)
    assert result.best_scale == 0.25 and [p[0] for p in result.curve] == [1.0, 0.5, 0.25]


def test_combines_a_list_of_vectors_and_shows_progress(capsys):
    origin = torch.zeros(4, 16)
    seen = []
    search_scale([_vector(), (_vector(), 2.0)], origin, lambda p: seen.append(p.clone()) or 0.0, grid=[0.5])
    torch.testing.assert_close(seen[0], torch.full((4, 16), 1.5))
    assert "λ search" in capsys.readouterr().err


def test_bad_arguments_are_refused():
    v, origin = _vector(), torch.zeros(4, 16)
    with pytest.raises(TPVError, match=r"unknown aggregate 'max'; use one of \['mean', 'min'\]"):
        search_scale(v, origin, lambda p: 0.0, aggregate="max")
    with pytest.raises(TPVError, match="non-empty list of finite numbers"):
        search_scale(v, origin, lambda p: 0.0, grid=[])
    with pytest.raises(TPVError, match=r"returned nan for 'score' at λ=0.0"):
        search_scale(v, origin, lambda p: float("nan"), progress=False)
    with pytest.raises(TPVError, match="empty dict"):
        search_scale(v, origin, lambda p: {}, progress=False)


@pytest.fixture
def fake_evaluate(monkeypatch):
    """Stands in for evaluate: records every call; the score peaks where the prompt mean is 0.4."""
    calls = []

    def evaluate(model, tokenizer, task, examples, method="rank", batch_size=32, progress=False, **lengths):
        prompt = get_prompt(model)
        calls.append(
            dict(
                model=model,
                tokenizer=tokenizer,
                task=task,
                examples=list(examples),
                method=method,
                batch_size=batch_size,
                prompt=prompt,
                progress=progress,
                **lengths,
            )
        )
        return {get_task(task).metric: -abs(prompt.mean().item() - 0.4), "accuracy": 0.0}

    monkeypatch.setattr(tpv.compose.search, "evaluate", evaluate)
    return calls


@pytest.fixture
def peft_model(make_tiny_model):
    model = make_tiny_model("llama")
    return init_prompt_tuning(model, origin=make_origin(model, num_virtual_tokens=4, seed=0))


def test_score_fn_sets_the_prompt_once_per_scale_reuses_one_model_and_passes_the_data(
    peft_model, fake_evaluate, monkeypatch
):
    set_calls = []
    real_set_prompt = tpv.compose.search.set_prompt
    monkeypatch.setattr(tpv.compose.search, "set_prompt", lambda *a: set_calls.append(a) or real_set_prompt(*a))
    rte = [{"sentence1": "A man sleeps.", "sentence2": "Someone rests.", "label": 0}]
    sst2 = [{"sentence": "great fun", "label": 1}, {"sentence": "dull", "label": 0}]
    score_fn = evaluation_score_fn(peft_model, "tok", {"rte": rte, "sst2": sst2}, method="generate", batch_size=4)
    origin = torch.zeros(4, 16)
    result = search_scale(_vector(), origin, score_fn, grid=[0.0, 0.4, 1.0], progress=False)

    assert result.best_scale == 0.4 and set(result.curve[0][2]) == {"rte", "sst2"}
    assert len(set_calls) == 3 and all(call[2] == "default" for call in set_calls)
    assert len(fake_evaluate) == 6
    assert all(call["model"] is peft_model and call["tokenizer"] == "tok" for call in fake_evaluate)
    assert all((call["method"], call["batch_size"]) == ("generate", 4) for call in fake_evaluate)
    assert [call["task"] for call in fake_evaluate] == ["rte", "sst2"] * 3
    assert fake_evaluate[1]["examples"] == sst2
    torch.testing.assert_close(fake_evaluate[2]["prompt"], torch.full((4, 16), 0.4))


def test_search_reads_validation_examples_only(peft_model, fake_evaluate, data_dir, monkeypatch):
    def key(example):
        return json.dumps(example, sort_keys=True)

    tasks = ["rte", "sst2"]
    validation = {t: {key(e) for e in load_split(t, "validation", data_dir)} for t in tasks}
    test = {t: {key(e) for e in load_split(t, "test", data_dir)} for t in tasks}
    data = {"rte": "validation", "sst2": validation_data("sst2", data_dir)[:20]}
    score_fn = evaluation_score_fn(peft_model, None, data, data_dir=data_dir)
    search_scale(_vector(), torch.zeros(4, 16), score_fn, grid=[0.0, 0.5], progress=False)

    assert len(fake_evaluate) == 4
    for call in fake_evaluate:
        seen = {key(e) for e in call["examples"]}
        assert seen <= validation[call["task"]] and not seen & test[call["task"]]
    assert len(fake_evaluate[0]["examples"]) == len(validation["rte"])


def test_test_data_is_refused(peft_model, data_dir):
    with pytest.raises(TPVError, match=r"given split 'test'; it reads the 'validation' split only"):
        evaluation_score_fn(peft_model, None, {"rte": "test"}, data_dir=data_dir)
    test_rows = load_split("rte", "test", data_dir)
    with pytest.raises(TPVError, match=r"10 of the 10 examples given for task 'rte' are in its test split"):
        evaluation_score_fn(peft_model, None, {"rte": test_rows[:10]}, data_dir=data_dir)
    mixed = validation_data("rte", data_dir)[:5] + test_rows[:1]
    with pytest.raises(TPVError, match="1 of the 6 examples"):
        evaluation_score_fn(peft_model, None, {"rte": mixed}, data_dir=data_dir)
    with pytest.raises(TPVError, match="non-empty mapping"):
        evaluation_score_fn(peft_model, None, {})
    with pytest.raises(TPVError, match="no validation examples"):
        evaluation_score_fn(peft_model, None, {"rte": []})


def test_an_evaluate_without_the_main_metric_is_an_error(peft_model, monkeypatch):
    monkeypatch.setattr(tpv.compose.search, "evaluate", lambda *a, **k: {"loss": 1.0})
    score_fn = evaluation_score_fn(peft_model, None, {"sst2": [{"sentence": "fine", "label": 1}]})
    with pytest.raises(TPVError, match=r"returned \['loss'\] for task 'sst2' but not its main metric"):
        score_fn(torch.zeros(4, 16))
