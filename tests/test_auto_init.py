"""auto_init on a tiny model: planted sources, the honest origin fallback, the saved adapter, bad inputs."""

import json

import pytest
import torch

from conftest import toy_examples
from tpv import TaskPromptVector, TPVError, auto_init, make_origin
from tpv.compose.auto_init import PLAN_FILENAME, load_sources
from tpv.engine.evaluation import evaluate
from tpv.engine.training import train_prompt

TOKENS = 4


def _model():
    """A tiny random Llama whose predictions depend on the soft prompt.

    With transformers' default init (std 0.02) the attention and MLP outputs are so small next to the residual
    stream that no prompt changes a prediction; std 0.5 makes the prompt matter, so tuning can help or hurt.
    """
    from tpv.experiments.tiny import tiny_llama

    return tiny_llama(initializer_range=0.5)


def _skewed(n: int, seed: int) -> list[dict]:
    """85% positive examples: a prompt that learns the label prior beats a random origin on accuracy."""
    examples = toy_examples(4 * n, seed)
    positive = [e for e in examples if e["label"] == 1]
    negative = [e for e in examples if e["label"] == 0]
    return positive[: int(0.85 * n)] + negative[: n - int(0.85 * n)]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """The toy task, the origin, and the task's own vector tuned from it."""
    from conftest import make_word_tokenizer
    from tpv.data import Task

    task = Task("toy", "sentiment", "text: {text} label:", ("negative", "positive"), metric="accuracy")
    origin = make_origin(_model(), TOKENS, seed=0)
    result = train_prompt(
        _model(),
        make_word_tokenizer(),
        task,
        origin,
        _skewed(96, 0),
        output_dir=tmp_path_factory.mktemp("run"),
        max_steps=40,
        batch_size=8,
        learning_rate=0.3,
        progress=False,
    )
    return task, origin, result.vector


def _sources(vector):
    generator = torch.Generator().manual_seed(1)
    noise = torch.randn(vector.shape, generator=generator) * vector.tensor.std()
    return {
        "noise": TaskPromptVector(noise, tasks={"noise": 1.0}),
        "own_copy": TaskPromptVector(vector.tensor.clone(), tasks={"own_copy": 1.0}),
        "negated": -1.0 * vector,
    }


def test_a_copy_of_the_targets_own_vector_ranks_first_and_beats_the_origin(tuned, word_tokenizer):
    task, origin, vector = tuned
    validation = _skewed(48, 5)
    plan = auto_init(
        _model(), word_tokenizer, task, _sources(vector), validation=validation, origin=origin, progress=False
    )
    assert plan.table[0].source == "own_copy"
    assert plan.chosen[0] == "own_copy"
    assert plan.start_score > plan.origin_score
    assert plan.beats_origin and plan.n_validation == 48
    # The plan's scores are real evaluations: re-scoring its prompt on a fresh model gives the same number.
    fresh = plan.peft_model(_model())
    again = evaluate(fresh, word_tokenizer, task, validation)["accuracy"]
    assert again == pytest.approx(plan.start_score)
    assert "own_copy" in str(plan) and "origin (random)" in str(plan)


def test_without_a_helpful_source_the_plan_keeps_the_origin(tuned, word_tokenizer):
    task, origin, vector = tuned
    sources = {"negated": -1.0 * vector}
    plan = auto_init(_model(), word_tokenizer, task, sources, validation=_skewed(48, 5), origin=origin, progress=False)
    assert all(score <= plan.origin_score for _, _, score in plan.searched)
    assert plan.chosen == [] and plan.scale == 0.0 and plan.vector is None
    assert plan.start_score == plan.origin_score
    assert torch.equal(plan.prompt, origin.tensor)
    assert "no combination of the 1 sources beat" in str(plan)


def test_the_saved_plan_is_a_ready_to_train_adapter(tuned, word_tokenizer, tmp_path):
    task, origin, vector = tuned
    plan = auto_init(
        _model(),
        word_tokenizer,
        task,
        _sources(vector),
        validation=_skewed(48, 5),
        origin=origin,
        k=1,
        grid=[1.0],
        progress=False,
    )
    folder = plan.save_pretrained(tmp_path / "start")
    assert (folder / "tpv_origin.safetensors").is_file()
    record = json.loads((folder / PLAN_FILENAME).read_text())
    assert record["chosen"] == ["own_copy"] and record["table"][0]["source"] == "own_copy"
    # Reading the adapter back gives the chosen vector, measured from the recorded origin.
    start = TaskPromptVector.from_peft(folder)
    assert torch.allclose(start.tensor, vector.tensor, atol=1e-6)
    # train_prompt continues from it (origin=None: the PeftModel's recorded origin).
    result = train_prompt(
        plan.peft_model(),
        word_tokenizer,
        task,
        None,
        toy_examples(32),
        output_dir=tmp_path / "t",
        max_steps=2,
        batch_size=8,
        progress=False,
    )
    assert result.origin is origin


def test_sources_from_files_folders_and_peft_adapters(tuned, tmp_path):
    task, origin, vector = tuned
    vector.save(tmp_path / "lib" / "toy.tpv.safetensors")
    (-1.0 * vector).save(tmp_path / "lib" / "neg.tpv.safetensors")
    from tpv import init_prompt_tuning

    init_prompt_tuning(_model(), vector, origin=origin).save_pretrained(str(tmp_path / "adapter"))
    assert sorted(load_sources(tmp_path / "lib")) == ["neg", "toy"]
    from_list = load_sources([tmp_path / "lib" / "neg.tpv.safetensors", tmp_path / "adapter"])
    assert sorted(from_list) == ["adapter", "neg"]
    assert torch.allclose(from_list["adapter"].tensor, vector.tensor, atol=1e-6)
    assert sorted(load_sources(tmp_path / "lib", exclude=["neg"])) == ["toy"]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"sources": {}}, r"no candidate source vectors"),
        ({"sources": {"x": torch.zeros(4, 16)}}, r"source 'x' is a Tensor; pass TaskPromptVectors"),
        ({"sources": 3}, r"sources must be 'zoo', a dict"),
        ({"sources": "/no/such/folder"}, r"no such source file or folder"),
        ({"k": 0}, r"k must be a positive int or None, got 0"),
        ({"grid": []}, r"grid must be non-empty positive finite"),
        ({"grid": ["a"]}, r"grid must be a list of numbers"),
        ({"validation": []}, r"no validation examples for task 'toy'"),
        ({"validation": [{"text": "good"}]}, r"validation example 1: .*lacks its label key 'label'"),
        ({"origin": "seven"}, r"origin must be a tpv.Origin or an int seed"),
        ({"merge_method": "average"}, r"unknown merge_method 'average'; use one of \["),
        ({"retrieval_steps": 2}, r"retrieval_steps=2 tunes a target prompt on training examples; pass train="),
        (
            {"sources": {"wide": TaskPromptVector(torch.zeros(6, 16), tasks={"wide": 1.0})}},
            r"source 'wide' has shape \(6, 16\) but the origin has \(4, 16\)",
        ),
    ],
)
def test_bad_inputs_raise_one_tpverror(tuned, word_tokenizer, options, message):
    task, origin, vector = tuned
    kwargs = {"sources": _sources(vector), "validation": _skewed(8, 5), "origin": origin, "progress": False}
    kwargs.update(options)
    with pytest.raises(TPVError, match=message):
        auto_init(_model(), word_tokenizer, task, **kwargs)


def test_a_merge_method_combines_the_best_k(tuned, word_tokenizer):
    task, origin, vector = tuned
    plan = auto_init(
        _model(),
        word_tokenizer,
        task,
        _sources(vector),
        validation=_skewed(16, 5),
        origin=origin,
        k=2,
        grid=[1.0],
        merge_method="ties",
        merge_options={"density": 0.5},
        progress=False,
    )
    assert [n for n, _, _ in plan.searched] == [2]
    if plan.chosen:
        assert '"method":"ties"' in plan.vector.merge.replace(" ", "")


def test_retrieval_reports_cosines_to_a_briefly_tuned_target(tuned, word_tokenizer):
    task, origin, vector = tuned
    plan = auto_init(
        _model(),
        word_tokenizer,
        task,
        _sources(vector),
        validation=_skewed(16, 5),
        train=toy_examples(32),
        retrieval_steps=3,
        origin=origin,
        k=1,
        grid=[1.0],
        progress=False,
    )
    cosines = {row.source: row.cosine for row in plan.table}
    assert cosines["own_copy"] == pytest.approx(-cosines["negated"])
    assert all(-1.0 <= value <= 1.0 for value in cosines.values())


@pytest.mark.slow
def test_auto_init_on_the_default_model_starts_imdb_from_the_zoo_without_imdb(tmp_path):
    """The paper's use: a new task (imdb) starts from the other tasks' zoo vectors, chosen on validation only."""
    from tpv import zoo
    from tpv.bridge.models import load_model

    model, tokenizer = load_model()
    plan = auto_init(
        model,
        tokenizer,
        "imdb",
        "zoo",
        exclude=["imdb"],
        # Small enough to score 15 sources in CI's minutes; the how-to (docs/howto/start-from-zoo.md) shows a
        # full-size run.
        max_validation=16,
        max_k=2,
        grid=[1.0],
        max_length=64,
        progress=False,
    )
    names = [row.source for row in plan.table]
    assert "imdb" not in names and set(names) == set(zoo.manifest()["tasks"]) - {"imdb"}
    # The default origin is make_origin(model, 20, seed=0), not the zoo's own: vectors apply to any origin.
    assert plan.n_validation == 16 and plan.origin.recipe == "sample_vocab(seed=0)"
    # Every candidate's score is a real validation score, and the start is the best point searched (or the origin).
    assert all(0.0 <= row.score <= 1.0 for row in plan.table)
    best = max([plan.origin_score] + [score for _, _, score in plan.searched])
    assert plan.start_score == best
    if plan.chosen:
        assert plan.start_score > plan.origin_score and plan.chosen == names[: len(plan.chosen)]
    folder = plan.save_pretrained(tmp_path / "imdb-start")
    start = TaskPromptVector.from_peft(folder)
    assert torch.allclose(start.apply_to(plan.origin), plan.prompt, atol=1e-5)
