"""`tpv init --auto` and the --data flags of train/eval/search/init, on a tiny model folder."""

import json

import pytest
import torch

from conftest import make_word_tokenizer, toy_examples
from tpv import Origin, TaskPromptVector
from tpv.cli import main
from tpv.data import TASKS


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=128,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        initializer_range=0.5,
    )
    folder = tmp_path_factory.mktemp("tiny-model")
    LlamaForCausalLM(config).save_pretrained(folder)
    make_word_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture
def my_data(tmp_path):
    """The user's own data: a folder of jsonl files with a string label field and another text field name."""
    folder = tmp_path / "my_reviews"
    folder.mkdir()
    words = {0: "negative", 1: "positive"}
    for split, (n, seed) in {"train": (24, 0), "validation": (12, 1), "test": (8, 2)}.items():
        rows = [{"review": e["text"], "stars": words[e["label"]]} for e in toy_examples(n, seed)]
        (folder / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    yield folder
    TASKS.pop("my_reviews", None)


@pytest.fixture
def library(tmp_path):
    torch.manual_seed(3)
    folder = tmp_path / "library"
    for name in ("alpha", "beta", "gamma"):
        TaskPromptVector(torch.randn(4, 16), tasks={name: 1.0}).save(folder / f"{name}.tpv.safetensors")
    return folder


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and "\n" not in err, err
    assert err.startswith("tpv") and "error: " in err, err
    return err


def test_init_auto_help_shows_examples(capsys):
    assert main(["init", "--help"]) == 0
    out = capsys.readouterr().out
    assert "tpv init --auto --task imdb --sources zoo" in out and "--data DIR_OR_FILE" in out
    assert "never on test" in out


def test_init_auto_on_own_data_writes_an_adapter_and_the_table(model_dir, my_data, library, tmp_path, capsys):
    out_dir = tmp_path / "start"
    argv = [
        "init",
        "--auto",
        "--data",
        str(my_data),
        "--text-field",
        "review",
        "--label-field",
        "stars",
        "--sources",
        str(library),
        "--grid",
        "0.5,1",
        "--max-k",
        "2",
        "--limit",
        "12",
        "--json",
        "--origin-seed",
        "2",
        "-o",
        str(out_dir),
        "--model",
        str(model_dir),
    ]
    assert main(argv) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["task"] == "my_reviews" and plan["n_validation"] == 12
    assert sorted(row["source"] for row in plan["table"]) == ["alpha", "beta", "gamma"]
    assert len(plan["searched"]) == 4 and plan["origin"] == "sample_vocab(seed=2)"
    assert (out_dir / "adapter_config.json").is_file()
    assert Origin.load(out_dir / "tpv_origin.safetensors").recipe == "sample_vocab(seed=2)"
    assert json.loads((out_dir / "tpv_auto_init.json").read_text())["chosen"] == plan["chosen"]
    start = TaskPromptVector.from_peft(out_dir)
    if plan["chosen"]:
        assert plan["start_score"] > plan["origin_score"] and start.norm() > 0
    else:
        assert plan["start_score"] == plan["origin_score"] and start.norm() == 0


def test_train_eval_search_take_own_data(model_dir, my_data, library, tmp_path, capsys):
    data = ["--data", str(my_data), "--label-field", "stars", "--model", str(model_dir)]
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--output-dir",
                str(run),
                "--steps",
                "2",
                "--batch-size",
                "4",
                "--virtual-tokens",
                "4",
                "--eval-limit",
                "4",
                *data,
            ]
        )
        == 0
    )
    assert "my_reviews.tpv.safetensors" in capsys.readouterr().out
    assert main(["eval", "--adapter", str(run), "--split", "test", "--json", *data]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 8
    assert main(["search", str(library / "alpha.tpv.safetensors"), "--grid", "0,1", "--json", *data]) == 0
    assert json.loads(capsys.readouterr().out)["tasks"] == ["my_reviews"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["init", "--auto", "--task", "nope", "-o", "OUT"], r"unknown task 'nope'"),
        (["init", "--auto", "-o", "OUT"], r"no task: name a registered task"),
        (["init", "--auto", "--task", "sst2", "--sources", "/no/such", "-o", "OUT"], r"no such source file or folder"),
        (
            ["init", "--auto", "--task", "sst2", "--sources", "zoo", "LIB", "-o", "OUT"],
            r"--sources zoo cannot be mixed",
        ),
        (["init", "a.tpv.safetensors", "--auto", "--task", "sst2", "-o", "OUT"], r"--auto chooses the vectors itself"),
        (["init", "--task", "sst2", "-o", "OUT"], r"add --auto"),
        (["init", "--auto", "--task", "sst2", "--sources", "LIB", "--grid", "0,x", "-o", "OUT"], r"bad --grid"),
        (["train", "--output-dir", "OUT"], r"no task: name a registered task"),
        (
            ["eval", "--vector", "LIB/alpha.tpv.safetensors", "--data", "DATA", "--label-field", "rating"],
            r"no label field 'rating' in .*; the fields found are \['review', 'stars'\]",
        ),
    ],
)
def test_bad_inputs_exit_2_with_one_line(argv, message, library, my_data, tmp_path, capsys):
    out = str(tmp_path / "out")
    argv = [
        str(library)
        if a == "LIB"
        else out
        if a == "OUT"
        else a.replace("LIB", str(library)).replace("DATA", str(my_data))
        for a in argv
    ]
    assert main(argv) == 2
    import re

    assert re.search(message, _error_line(capsys))


def _hub_cache(cache_dir, repo_id, folder, commit="0123456789abcdef0123456789abcdef01234567") -> str:
    # huggingface_hub's own cache layout, so the real snapshot_download finds the repo offline.
    repo = cache_dir / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for path in folder.iterdir():
        (snapshot / path.name).write_bytes(path.read_bytes())
    return commit


@pytest.fixture
def my_dataset(tmp_path):
    """The user's own `datasets` DatasetDict saved with save_to_disk: ClassLabel names, no label words given."""
    import datasets

    features = datasets.Features(
        {"review": datasets.Value("string"), "label": datasets.ClassLabel(names=["negative", "positive"])}
    )
    parts = {}
    for split, (n, seed) in {"train": (24, 0), "validation": (12, 1), "test": (8, 2)}.items():
        rows = toy_examples(n, seed)
        columns = {"review": [e["text"] for e in rows], "label": [e["label"] for e in rows]}
        parts[split] = datasets.Dataset.from_dict(columns, features=features)
    folder = tmp_path / "reviews_dataset"
    datasets.DatasetDict(parts).save_to_disk(str(folder))
    yield folder
    TASKS.pop("my_dataset_task", None)


def test_dataset_and_hub_ids_wherever_a_path_goes(model_dir, my_dataset, library, tmp_path, capsys):
    cache = tmp_path / "hub-cache"
    _hub_cache(cache, "me/tiny", model_dir)
    _hub_cache(cache, "me/zoo", library)
    alpha = TaskPromptVector.load(library / "alpha.tpv.safetensors")
    commit = _hub_cache(cache, "me/alpha-tpv", alpha.save_pretrained(tmp_path / "shared"))
    hub = ["--cache-dir", str(cache), "--local-files-only", "--model", "me/tiny"]
    data = ["--dataset", str(my_dataset), "--text-field", "review"]

    out = tmp_path / "start"
    argv = ["init", "--auto", "--task", "my_dataset_task", "--sources", "me/zoo", "--grid", "0.5,1", "--max-k", "1"]
    assert main([*argv, "--limit", "12", "--json", "-o", str(out), *data, *hub]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["task"] == "my_dataset_task" and plan["n_validation"] == 12
    assert sorted(row["source"] for row in plan["table"]) == ["alpha", "beta", "gamma"]
    assert TASKS["my_dataset_task"].label_words == ("negative", "positive")  # the ClassLabel names

    argv = ["eval", "--vector", "me/alpha-tpv", "--task", "my_dataset_task", "--split", "test", "--json"]
    assert main([*argv, *data, *hub, "--revision", commit]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 8 and "alpha" in result["source"]

    assert main(["vector", "info", "me/alpha-tpv", "--json", "--cache-dir", str(cache), "--local-files-only"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["tasks"] == {"alpha": 1.0}
    # A revision the cache does not hold is a bad argument, refused before anything else.
    argv = ["vector", "info", "me/alpha-tpv", "--revision", "v9", "--cache-dir", str(cache), "--local-files-only"]
    assert main(argv) == 2
    assert "cannot get the vector 'me/alpha-tpv'" in _error_line(capsys)


def test_dataset_config_needs_a_dataset(capsys):
    assert main(["eval", "--vector", "x.tpv.safetensors", "--dataset-config", "sst2"]) == 2
    assert "--dataset-config sst2 needs --dataset ID" in _error_line(capsys)


@pytest.fixture
def toy_data_dir(tmp_path):
    """sst2 and imdb as a --data-dir of toy rows (one word decides the label), so a zoo builds in seconds."""
    folder = tmp_path / "data"
    for number, (task, field) in enumerate((("sst2", "sentence"), ("imdb", "text"))):
        for split, count in (("train", 32), ("validation", 32), ("test", 8)):
            rows = [{field: e["text"], "label": e["label"]} for e in toy_examples(count, seed=10 * number + len(split))]
            (folder / task).mkdir(parents=True, exist_ok=True)
            (folder / task / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_zoo_build_writes_a_zoo_that_list_and_init_auto_read(model_dir, toy_data_dir, tmp_path, capsys):
    zoo_dir = tmp_path / "my-zoo"
    data = ["--data-dir", str(toy_data_dir), "--model", str(model_dir)]
    argv = ["zoo", "build", "--tasks", "sst2", "imdb", "--output-dir", str(zoo_dir), "--virtual-tokens", "4"]
    budget = ["--steps", "2", "--selection-examples", "8", "--held-examples", "16", "--test-examples", "8"]
    assert main([*argv, *budget, "--eval-every", "1", "--quiet", *data]) == 0
    assert f"wrote {zoo_dir}: 2 vectors" in capsys.readouterr().out
    assert main(["zoo", "list", str(zoo_dir), "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert sorted(manifest["tasks"]) == ["imdb", "sst2"] and manifest["tasks"]["sst2"]["budget"] == 2
    assert TaskPromptVector.load(zoo_dir / manifest["tasks"]["sst2"]["file"]).shape == (4, 16)
    assert main(["zoo", "list", str(zoo_dir)]) == 0 and "sst2" in capsys.readouterr().out

    argv = ["init", "--auto", "--task", "imdb", "--sources", str(zoo_dir), "--exclude", "imdb", "--include-at-chance"]
    assert main([*argv, "--grid", "1", "--limit", "16", "--json", "-o", str(tmp_path / "start"), *data]) == 0
    assert [row["source"] for row in json.loads(capsys.readouterr().out)["table"]] == ["sst2"]


@pytest.mark.parametrize(
    "options, message",
    [
        (["--tasks", "sst2", "nope"], "unknown task 'nope'"),
        (["--tasks", "sst2", "--steps", "0"], "--steps must be ≥ 1, got 0"),
        (["--tasks", "sst2", "--lr", "-1"], "--lr must be a positive number such as 0.3, got -1.0"),
    ],
)
def test_zoo_build_checks_its_values_before_the_model_loads(options, message, tmp_path, capsys, monkeypatch):
    import tpv.bridge.models

    monkeypatch.setattr(tpv.bridge.models, "load_model", lambda *a, **k: pytest.fail("loaded the model"))
    assert main(["zoo", "build", *options, "--output-dir", str(tmp_path / "zoo")]) == 2
    assert message in _error_line(capsys) and not (tmp_path / "zoo").exists()


def test_zoo_build_dry_run_prints_the_budgets(capsys, tmp_path):
    from tpv.compose.zoo.build import budget_for

    assert main(["zoo", "build", "--tasks", "sst2", "rte", "--output-dir", str(tmp_path / "z"), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["sst2", str(budget_for("sst2").steps)],
        ["rte", str(budget_for("rte").steps)],
    ]
    assert not (tmp_path / "z").exists()


def test_a_dataset_named_like_a_built_in_task_asks_for_a_name(my_dataset, capsys):
    argv = ["eval", "--vector", "x.tpv.safetensors", "--task", "sst2", "--dataset", str(my_dataset)]
    assert main(argv) == 2
    error = _error_line(capsys)
    assert "task 'sst2' is already registered" in error and "name the task yourself (TASK or --task)" in error
