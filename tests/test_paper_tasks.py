"""protocol="paper" words every task as the official code (templates and label words transcribed from
kinit-sk/task-prompt-vectors@3866c35) and chooses every λ by the protocol's own scoring."""

import inspect
from pathlib import Path

import pytest
import torch

import tpv.compose.search as search_module
from tpv import TPVError, list_tasks
from tpv.bridge.vector import TaskPromptVector
from tpv.data import get_task, paper_tasks
from tpv.data.paper_tasks import OFFICIAL_COMMIT, OFFICIAL_TASKS, paper_task
from tpv.experiments import load_config
from tpv.experiments.lab import Lab

# Rows read off the official tasks/tasks.py by hand (class, labels_list / id2label, input pieces), independent of
# the table in tpv.data.paper_tasks: the words and prefixes the issue found tpv did not use.
HAND_READ = {
    "sst5": ("sst5 sentence {sentence} label:", ("very negative", "negative", "neutral", "positive", "very positive")),
    "qnli": ("qnli question: {question} sentence: {sentence} label:", ("entailment", "not_entailment")),
    "trec": (
        "trec_coarse What is this question asking for: {text} label:",
        ("Abbreviation", "Entity", "Description", "Person", "Location", "Quantity"),
    ),
    "ag_news": (
        "ag_news What is the category for following text: {text} label:",
        ("World", "Sports", "Business", "Sci/Tech"),
    ),
    "qqp": ("qqp question1: {question1} question2: {question2} label:", ("not_duplicate", "duplicate")),
}


def test_the_table_names_the_official_commit():
    assert OFFICIAL_COMMIT == "3866c35"
    assert "kinit-sk/task-prompt-vectors" in paper_tasks.__doc__ and "``OFFICIAL_COMMIT``" in paper_tasks.__doc__
    assert paper_tasks.OFFICIAL_SOURCE == "kinit-sk/task-prompt-vectors@3866c35:tasks/tasks.py"


@pytest.mark.parametrize("name", sorted(HAND_READ))
def test_the_table_matches_rows_read_by_hand(name):
    assert OFFICIAL_TASKS[name] == HAND_READ[name]


def test_the_paper_protocol_uses_the_table_for_every_task(tmp_path):
    paper = Lab(load_config("paper-smoke"), tmp_path, progress=False)
    ours = Lab(load_config("smoke"), tmp_path, progress=False)
    for name, (template, words) in OFFICIAL_TASKS.items():
        task = paper.task(name)
        assert (task.template, task.label_words) == (template, words), name
        assert ours.task(name) == get_task(name)
    # Every built-in task the official file has a class for is in the table; the rest are named as exceptions.
    assert set(OFFICIAL_TASKS) | {"squad_v2", "math"} == set(list_tasks())


def test_a_paper_task_formats_an_example_as_the_official_code():
    text, target = paper_task("sst5").format({"sentence": "a fine film", "label": 0})
    assert (text, target) == ("sst5 sentence a fine film label:", "very negative")
    # Exact match accepts only the official spelling.
    qnli = paper_task("qnli")
    assert qnli.parse_prediction("not_entailment", exact=True) == 1
    assert qnli.parse_prediction("not entailment", exact=True) == -1


def test_a_mixture_under_the_paper_protocol_words_each_member_officially(tmp_path):
    lab = Lab(load_config("paper-smoke"), tmp_path, progress=False)
    mixture = lab.mixture_task(["sst2", "yelp_polarity"])
    assert [m.template for m in mixture.members] == [OFFICIAL_TASKS["sst2"][0], OFFICIAL_TASKS["yelp_polarity"][0]]


def test_a_task_with_other_labels_under_a_builtin_name_is_refused():
    from dataclasses import replace

    three = replace(get_task("sst2"), label_words=("a", "b", "c"))
    with pytest.raises(TPVError, match="register it under another name"):
        paper_task(three)


def test_the_paper_protocol_has_its_own_run_key():
    config = load_config("paper-smoke")
    before = config.fingerprint()
    config.protocol.name = "tpv"  # the same settings worded by tpv's registry must not share a cache
    assert config.fingerprint() != before


# ---- λ search -----------------------------------------------------------------------------------------------


def _spy_on_search_scoring(monkeypatch) -> list:
    calls: list = []
    real = search_module.evaluate

    def spy(model, tokenizer, task, data, **options):
        calls.append((task, options))
        return real(model, tokenizer, task, data, **options)

    monkeypatch.setattr(search_module, "evaluate", spy)
    return calls


def test_every_lambda_search_of_study_3_scores_by_the_protocol(tmp_path, monkeypatch):
    from tpv.experiments.studies import pairwise_sums

    config = load_config("paper-smoke")
    config.seeds = [0]
    lab = Lab(config, tmp_path, progress=False)
    shape = lab.origin(0).tensor.shape
    # Stand-in source vectors (no training): the search's scoring is what is tested, not the vectors.
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    monkeypatch.setattr(lab, "source_vector", lambda task, seed: TaskPromptVector(noise, tasks={task: 1.0}))
    calls = _spy_on_search_scoring(monkeypatch)
    pairwise_sums.run(lab, progress=False)
    grid = config.transfer.scale_grid
    assert len(calls) == 2 * len(grid)  # two tasks scored at every λ of the grid
    protocol = config.protocol
    for task, options in calls:
        assert options["method"] == protocol.scoring[0] == "generate"
        assert options["answer_match"] == protocol.answer_match == "exact"
        assert options["max_new_tokens"] == protocol.max_new_tokens
        assert (task.template, task.label_words) == OFFICIAL_TASKS[task.name]


def test_the_tpv_protocol_keeps_ranking_in_its_lambda_search(tmp_path, monkeypatch):
    lab = Lab(load_config("smoke"), tmp_path, progress=False)
    shape = lab.origin(0).tensor.shape
    vectors = lambda: [TaskPromptVector(torch.zeros(shape), tasks={"sst2": 1.0})]  # noqa: E731
    calls = _spy_on_search_scoring(monkeypatch)
    lab.search_scale("sum:test", vectors, 0, ["sst2"])
    assert calls and all(o["method"] == "rank" and t == get_task("sst2") for t, o in calls)


def test_only_the_lab_runs_lambda_searches_in_the_studies():
    # Every study reaches search_scale through Lab.search_scale, which the tests above pin to the protocol.
    root = Path(inspect.getfile(Lab)).parent
    callers = {
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if "evaluation_score_fn(" in p.read_text() or "search_scale(vectors" in p.read_text()
    }
    assert callers == {"lab.py"}


def test_the_transfer_study_whose_auto_init_ranks_is_refused_under_the_paper_protocol():
    from tpv.experiments.config import ExperimentConfig

    with pytest.raises(TPVError, match="transfer study runs under protocol.name"):
        ExperimentConfig(name="x", studies=["transfer"], protocol={"name": "paper"})
    assert ExperimentConfig(name="x", studies=["transfer"], protocol={"name": "tpv"}).studies == ["transfer"]
