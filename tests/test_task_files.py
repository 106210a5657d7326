"""Task.from_files: the user's own data as a task in zero lines of setup."""

import json

import pytest

from tpv import TPVError
from tpv.data import TASKS, FileTask, Task, get_task, load_split


@pytest.fixture(autouse=True)
def _clean_registry():
    before = set(TASKS)
    yield
    for name in set(TASKS) - before:
        del TASKS[name]


def _write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")


def test_a_folder_of_jsonl_with_string_labels(tmp_path):
    rows = [{"id": i, "review": f"text {i}", "stars": ["bad", "good"][i % 2]} for i in range(10)]
    _write_jsonl(tmp_path / "reviews" / "train.jsonl", rows)
    _write_jsonl(tmp_path / "reviews" / "dev.jsonl", rows[:4])
    task = Task.from_files(tmp_path / "reviews", label_field="stars")
    assert isinstance(task, FileTask) and get_task("reviews") is task
    assert task.fields == ("review",)  # the id is no text field
    assert task.label_words == ("bad", "good") and task.family == "sentiment"
    assert task.format(task.split("train")[1]) == ("review: text 1\nsentiment:", "good")
    assert load_split("reviews", "validation") == task.split("validation") and len(task.split("validation")) == 4
    with pytest.raises(TPVError, match=r"task 'reviews' .* has no 'test' split; it has \['train', 'validation'\]"):
        load_split("reviews", "test")


def test_a_csv_file_with_integer_labels_and_a_new_family(tmp_path):
    path = tmp_path / "tickets.csv"
    lines = ["subject,body,urgency"] + [f"s{i},b{i},{i % 3}" for i in range(60)]
    path.write_text("\n".join(lines) + "\n")
    task = Task.from_files(
        path, text_fields=["subject", "body"], label_field="urgency", labels=["low", "medium", "high"], family="support"
    )
    assert task.family == "support" and task.name == "tickets"
    assert task.template == "subject: {subject}\nbody: {body}\nanswer:"
    # One file and no validation split: the last 10% of the shuffled examples, at least 32, are held out.
    assert len(task.split("validation")) == 32 and len(task.split("train")) == 28
    assert task.format(task.split("train")[0])[1] in {"low", "medium", "high"}


def test_non_integer_numbers_make_a_regression_task(tmp_path):
    _write_jsonl(tmp_path / "sim" / "train.jsonl", [{"a": "x", "b": "y", "score": i / 7} for i in range(40)])
    task = Task.from_files(tmp_path / "sim", label_field="score")
    assert task.regression and task.metric == "pearson" and task.family == "similarity"


def test_a_datasets_dataset_is_accepted(tmp_path):
    datasets = pytest.importorskip("datasets")
    data = datasets.Dataset.from_list([{"text": f"t{i}", "label": ["no", "yes"][i % 2]} for i in range(50)])
    task = Task.from_files(data, name="yes_no")
    assert task.label_words == ("no", "yes") and len(task.split("train")) == 18


@pytest.mark.parametrize(
    "options, message",
    [
        ({"label_field": "rating"}, r"no label field 'rating' in .*; the fields found are \['label', 'text'\]"),
        ({"text_fields": ["body"]}, r"no text field\(s\) \['body'\] in .*; the fields found are \['label', 'text'\]"),
        ({"labels": ["only"]}, r"labels in .* run 0..1 but labels= names 1"),
        ({"name": "sst2"}, r"task name 'sst2' is a built-in task"),
    ],
)
def test_errors_name_the_missing_field_and_list_those_found(tmp_path, options, message):
    _write_jsonl(tmp_path / "d" / "train.jsonl", [{"text": f"t{i}", "label": i % 2} for i in range(40)])
    kwargs = {"labels": ["no", "yes"], **options}
    with pytest.raises(TPVError, match=message):
        Task.from_files(tmp_path / "d", **kwargs)


def test_integer_labels_without_words_ask_for_labels(tmp_path):
    _write_jsonl(tmp_path / "d" / "train.jsonl", [{"text": f"t{i}", "label": i % 2} for i in range(40)])
    with pytest.raises(TPVError, match=r"holds integer labels \[0, 1\]; pass labels=\[word for label 0"):
        Task.from_files(tmp_path / "d")
    with pytest.raises(TPVError, match=r"no such file or folder"):
        Task.from_files(tmp_path / "missing")


def test_families_are_open():
    task = Task("legal", "contracts", "clause: {text}\nrisk:", ("low", "high"))
    assert task.family == "contracts"


def test_a_broken_table_of_ones_own_fails_as_a_registered_tasks_does(tmp_path):
    # Both read through tpv.data.reading: a row with a cell beyond the header, or bytes that are not UTF-8,
    # name the file and the row instead of shifting cells or raising UnicodeDecodeError.
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "train.csv").write_text("text,label\ngood film,good\nbad, film,bad\n")
    with pytest.raises(TPVError, match=r"train\.csv, row 3: 3 cells but the header names 2"):
        Task.from_files(folder)
    (folder / "train.csv").write_bytes(b"text,label\ncaf\xe9,good\n")
    with pytest.raises(TPVError, match=r"train\.csv.*UTF-8"):
        Task.from_files(folder)
