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


def _reviews(datasets, n=40, name="my_reviews", labels=None):
    features = datasets.Features(
        {
            "id": datasets.Value("int64"),
            "text": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["neg", "pos"]),
        }
    )
    rows = {
        "id": list(range(n)),
        "text": [f"review {i}" for i in range(n)],
        "label": labels or [i % 2 for i in range(n)],
    }
    return datasets.Dataset.from_dict(rows, info=datasets.DatasetInfo(dataset_name=name, features=features))


@pytest.fixture
def datasets(monkeypatch):
    datasets = pytest.importorskip("datasets")

    # Nothing may copy a whole dataset into Python lists: the task reads rows on demand.
    def refused(self, *args, **kwargs):
        raise AssertionError("a whole-dataset copy")

    for method in ("to_list", "to_dict", "to_pandas"):
        monkeypatch.setattr(datasets.Dataset, method, refused)
    return datasets


def test_from_dataset_reads_classlabel_names_and_skips_unlabelled_splits(datasets):
    data = datasets.DatasetDict(
        {
            "train": _reviews(datasets),
            "test": _reviews(datasets, 36),
            "unsupervised": _reviews(datasets, 10, labels=[-1] * 10),  # imdb's layout
        }
    )
    with pytest.warns(UserWarning, match=r"split 'unsupervised' has no labels \(label is -1 in all 10 rows"):
        task = Task.from_dataset(data)
    assert get_task("my_reviews") is task and task.label_words == ("neg", "pos")  # no labels= needed
    assert sorted(task.data) == ["test", "train", "validation"]  # the held-out validation, as from_files does
    assert len(task.split("train")) + len(task.split("validation")) == 40 and len(task.split("test")) == 36
    assert task.fields == ("text",) and task.template == "text: {text}\nanswer:"  # the id is no text field
    assert task.format(load_split("my_reviews", "test")[3]) == ("text: review 3\nanswer:", "pos")
    assert task.split("test")[:2] == [
        {"id": 0, "text": "review 0", "label": 0},
        {"id": 1, "text": "review 1", "label": 1},
    ]


def test_unlabelled_rows_of_a_labelled_split_are_left_out_with_a_note(datasets):
    data = datasets.DatasetDict(
        {"train": _reviews(datasets, labels=[-1, -1] + [i % 2 for i in range(38)]), "validation": _reviews(datasets, 4)}
    )
    with pytest.warns(UserWarning, match=r"2 of 40 rows of split 'train' have no label \(label=-1\); left out"):
        task = Task.from_dataset(data, name="partly")
    assert len(task.split("train")) == 38 and task.split("train")[0]["text"] == "review 2"


def test_from_dataset_reads_a_save_to_disk_folder(datasets, tmp_path):
    datasets.DatasetDict({"train": _reviews(datasets), "validation": _reviews(datasets, 8)}).save_to_disk(
        tmp_path / "d"
    )
    task = Task.from_dataset(tmp_path / "d", label_field="label", text_fields="text")
    assert task.name == "my_reviews" and task.source == f"'{tmp_path / 'd'}'" and len(task.split("validation")) == 8


def test_from_dataset_loads_a_hub_id_with_load_dataset(datasets, monkeypatch):
    calls = []

    def load_dataset(path, name=None, **kwargs):  # stands in for the download; the rest is the real datasets
        calls.append((path, name, kwargs))
        return datasets.DatasetDict(
            {"train": _reviews(datasets, name="imdb"), "test": _reviews(datasets, 8, name="imdb")}
        )

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    # "imdb" is a built-in task of another template: never replaced silently.
    with pytest.raises(TPVError, match=r"task 'imdb' is already registered \(a built-in task .*\); pass name="):
        Task.from_dataset("stanfordnlp/imdb", revision="v1")
    assert calls == [("stanfordnlp/imdb", None, {"revision": "v1", "token": None, "cache_dir": None})]
    task = Task.from_dataset("stanfordnlp/imdb", name="imdb_hf", splits={"train": "train", "validation": "test"})
    assert task.name == "imdb_hf" and sorted(task.data) == ["train", "validation"]
    with pytest.raises(FileNotFoundError, match="neither a save_to_disk folder nor a Hub dataset id"):
        Task.from_dataset("./no/such folder")


def test_a_clash_with_a_user_task_of_another_definition_is_refused(datasets):
    Task.from_dataset(_reviews(datasets, 60))
    Task.from_dataset(_reviews(datasets, 60))  # the same definition again: fine
    with pytest.raises(TPVError, match=r"task 'my_reviews' is already registered \(a user task"):
        Task.from_dataset(_reviews(datasets, 60), template="say: {text}\nanswer:")
    assert Task.from_dataset(
        _reviews(datasets, 60), template="say: {text}\nanswer:", overwrite=True
    ).template.startswith("say")
    nameless = datasets.Dataset.from_dict({"text": ["a"] * 40, "label": [0.5] * 40})
    with pytest.raises(TPVError, match="carries no dataset name in its info; pass name="):
        Task.from_dataset(nameless)
    assert Task.from_dataset(nameless, name="scores").regression


def test_from_dataset_without_datasets_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets now raises ImportError
    with pytest.raises(TPVError, match=r"pip install 'tpv\[hub\]'"):
        Task.from_dataset("stanfordnlp/imdb")


def test_hub_splits_without_datasets_name_the_extra(monkeypatch):
    import sys

    from tpv.data.hub import load_hub_split

    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(TPVError, match=r"task 'rte' from the Hugging Face Hub needs .*pip install 'tpv\[hub\]'"):
        load_hub_split(get_task("rte"), "train")
