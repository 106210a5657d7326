"""The `tpv` command: help everywhere, one-line errors with exit 2, and real runs on a tiny saved model."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tpv import Origin, TaskPromptVector, get_prompt
from tpv.cli import build_parser, main

SUBCOMMANDS = [
    ["train"],
    ["vector"],
    ["vector", "info"],
    ["vector", "combine"],
    ["vector", "similarity"],
    ["init"],
    ["eval"],
    ["search"],
    ["zoo"],
    ["zoo", "build"],
    ["zoo", "list"],
    ["reproduce"],
]


@pytest.fixture
def vector_files(tmp_path):
    torch.manual_seed(1)
    paths = {}
    for task in ("sst2", "yelp_polarity", "imdb"):
        paths[task] = TaskPromptVector(
            torch.randn(4, 16), tasks={task: 1.0}, num_virtual_tokens=4, origin="sample_vocab(seed=0)"
        ).save(tmp_path / f"{task}.tpv.safetensors")
    return {task: str(path) for task, path in paths.items()}


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and "\n" not in err, err
    assert err.startswith("tpv") and "error: " in err, err
    return err


def test_help_everywhere_exits_0(capsys):
    assert main(["--help"]) == 0
    assert "examples:" in capsys.readouterr().out
    for words in SUBCOMMANDS:
        assert main([*words, "--help"]) == 0, words
        assert "usage: tpv " + " ".join(words) in capsys.readouterr().out


def test_subcommands_show_examples():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name in ("train", "vector", "init", "eval", "search", "zoo", "reproduce"):
        assert "examples:" in commands[name].epilog


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "the following arguments are required: COMMAND"),
        (["vector"], "the following arguments are required: COMMAND"),
        (["train", "no_such_task", "--output-dir", "{tmp}/run"], "unknown task 'no_such_task'"),
        (
            ["train", "sst2", "--output-dir", "{tmp}/run", "--limit", "4", "--lr", "nan"],
            "--lr must be a positive number such as 0.3, got nan",
        ),
        (
            ["train", "sst2", "--output-dir", "{tmp}/run", "--limit", "4", "--lr", "-1"],
            "--lr must be a positive number such as 0.3, got -1.0",
        ),
        (["vector", "info", "{bad}"], "it is a Python pickle"),
        (["vector", "combine", "{sst2}:abc", "-o", "x.tpv.safetensors"], "bad weight 'abc'"),
        (["vector", "combine", "{sst2}", "--method", "median", "-o", "x.tpv.safetensors"], "invalid choice: 'median'"),
        (["vector", "similarity", "{sst2}", "missing.tpv.safetensors"], "no such file: 'missing.tpv.safetensors'"),
        (["init", "{short}", "{sst2}", "-o", "out"], "num_virtual_tokens differ"),
        (["eval", "--adapter", "{tmp}", "--task", "sst2"], "has no adapter_config.json"),
        (["search", "{sst2}", "--grid", "0,half,1"], "bad --grid '0,half,1'"),
        (["reproduce", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_malformed_input_exits_2_with_one_line(argv, message, vector_files, tmp_path, capsys, model_dir):
    TaskPromptVector(torch.ones(2, 16), tasks={"short": 1.0}).save(tmp_path / "short.tpv.safetensors")
    (tmp_path / "bad.tpv.safetensors").write_bytes(b"\x80\x04not a safetensors file")
    names = {
        **vector_files,
        "short": str(tmp_path / "short.tpv.safetensors"),
        "bad": str(tmp_path / "bad.tpv.safetensors"),
        "tmp": str(tmp_path),
    }
    argv = [arg.format(**names) for arg in argv]
    if argv and argv[0] in ("train", "init", "eval", "search"):
        argv += ["--model", str(model_dir)]
    assert main(argv) == 2
    assert message in _error_line(capsys)


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["train", "sst2", "--virtual-tokens", "0", "--output-dir", "{tmp}/run"],
            "--virtual-tokens must be ≥ 1, got 0",
        ),
        (["train", "sst2", "--output-dir", "{sst2}/run"], "a file is in the way at '{sst2}'"),
        (["train", "sst2", "--scale", "inf", "--output-dir", "{tmp}/run"], "--scale must be a finite number, got inf"),
        (["eval", "--vector", "{sst2}", "--task", "sst2", "--device", "bogus"], "--device 'bogus' is not a device"),
        (["eval", "--vector", "{sst2}", "--task", "sst2", "--origin", "{tmp}/none.origin.safetensors"], "no such file"),
        (["search", "{sst2}", "--device", "cuda:99"], "--device cuda:99 but "),
        (["search", "{sst2}", "--model", "{tmp}/no-model"], "--model {tmp}/no-model: no such folder"),
        (["init", "{sst2}", "-o", "{tmp}/x", "--virtual-tokens", "-1"], "--virtual-tokens must be ≥ 1, got -1"),
        (["init", "--auto", "--task", "sst2", "--k", "0", "-o", "{tmp}/x"], "--k must be ≥ 1, got 0"),
        (["init", "--auto", "--task", "sst2", "--merge-method", "median", "-o", "{tmp}/x"], "unknown --merge-method"),
        (["init", "--auto", "--task", "no_such_task", "-o", "{tmp}/x"], "unknown task 'no_such_task'"),
    ],
)
def test_bad_values_exit_2_before_the_model_loads(argv, message, vector_files, tmp_path, capsys, monkeypatch):
    import tpv.bridge.models

    monkeypatch.setattr(tpv.bridge.models, "load_model", lambda *a, **k: pytest.fail("loaded the model"))
    names = {**vector_files, "tmp": str(tmp_path)}
    assert main([arg.format(**names) for arg in argv]) == 2
    assert message.format(**names) in _error_line(capsys)
    assert not (tmp_path / "run").exists() and not (tmp_path / "x").exists()


def test_a_bad_value_is_exactly_one_line_with_no_dtype_note(model_dir, tmp_path):
    # The dtype note ("tpv: float32: this CPU has no AMX …") is printed when a model loads; a bad value used to
    # be found only after the load, so the note came before the error.
    env = {key: value for key, value in os.environ.items() if key != "TPV_DTYPE"}
    command = [sys.executable, "-m", "tpv", "train", "sst2", "--virtual-tokens", "0", "--output-dir", "x"]  # cwd: tmp
    done = subprocess.run(
        [*command, "--model", str(model_dir)], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert (
        done.stderr
        == "tpv: error: --virtual-tokens must be ≥ 1, got 0; pass a number of soft-prompt tokens such as 20\n"
    )
    assert not (tmp_path / "x").exists()


def test_the_dtype_note_is_printed_once_where_the_model_loads(model_dir, tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "TPV_DTYPE"}
    done = subprocess.run(
        [sys.executable, "-m", "tpv", "init", "--virtual-tokens", "2", "-o", "out", "--model", str(model_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stderr.splitlines() if "override with dtype= / --dtype" in line]
    assert len(notes) == 1, done.stderr


def test_a_failure_of_the_work_exits_1(vector_files, tmp_path, capsys):
    short = TaskPromptVector(torch.ones(2, 16), tasks={"short": 1.0}).save(tmp_path / "short.tpv.safetensors")
    out = tmp_path / "sum.tpv.safetensors"
    # The inputs are read (a missing one is a usage error, 2); adding vectors of two lengths fails the work (1).
    assert main(["vector", "combine", vector_files["sst2"], str(tmp_path / "missing"), "-o", str(out)]) == 2
    assert "no such file" in _error_line(capsys)
    assert main(["vector", "combine", vector_files["sst2"], str(short), "-o", str(out)]) == 1
    assert "num_virtual_tokens differ" in _error_line(capsys) and not out.exists()


def test_help_documents_the_exit_statuses(capsys):
    assert main(["--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "exit status: 0 done; 1 the work failed" in help_text and "2 the command line is wrong" in help_text


def test_device_reaches_load_model(model_dir, vector_files, tmp_path, monkeypatch, capsys):
    import tpv.bridge.models

    real, devices = tpv.bridge.models.load_model, []

    def spy(*args, **kwargs):
        devices.append(kwargs["device"])
        return real(*args, **kwargs)

    monkeypatch.setattr(tpv.bridge.models, "load_model", spy)
    argv = ["init", vector_files["sst2"], "--model", str(model_dir)]
    assert main([*argv, "-o", str(tmp_path / "a"), "--device", "cpu"]) == 0
    assert main([*argv, "-o", str(tmp_path / "b")]) == 0
    assert devices == ["cpu", None]  # None: load_model's default, CUDA where available


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_a_gpu_is_a_usage_error(vector_files, capsys):
    assert main(["eval", "--vector", vector_files["sst2"], "--task", "sst2", "--device", "cuda"]) == 2
    assert "--device cuda but torch sees no CUDA device here" in _error_line(capsys)


def test_a_non_safetensors_file_is_one_line_error(tmp_path, capsys):
    path = tmp_path / "x.tpv.safetensors"
    path.write_bytes(b"PK\x03\x04zip")
    assert main(["vector", "info", str(path)]) == 2
    assert "never unpickles" in _error_line(capsys)


def test_vector_info(vector_files, capsys):
    assert main(["vector", "info", vector_files["sst2"]]) == 0
    out = capsys.readouterr().out
    assert out.startswith("TaskPromptVector(1·sst2, 4×16, base=None)")
    assert "sample_vocab(seed=0)" in out and "4 virtual tokens" in out
    assert main(["vector", "info", vector_files["sst2"], vector_files["imdb"], "--json"]) == 0
    infos = json.loads(capsys.readouterr().out)
    assert [i["tasks"] for i in infos] == [{"sst2": 1.0}, {"imdb": 1.0}]
    expected = TaskPromptVector.load(vector_files["sst2"]).norm()
    assert infos[0]["shape"] == [4, 16] and infos[0]["norm"] == pytest.approx(expected)


def test_vector_combine_weights_and_methods(vector_files, tmp_path, capsys):
    out = tmp_path / "combo.tpv.safetensors"
    assert (
        main(["vector", "combine", vector_files["sst2"], f"{vector_files['yelp_polarity']}:0.5", "-o", str(out)]) == 0
    )
    assert "wrote" in capsys.readouterr().out
    combo = TaskPromptVector.load(out)
    a, b = TaskPromptVector.load(vector_files["sst2"]), TaskPromptVector.load(vector_files["yelp_polarity"])
    torch.testing.assert_close(combo.tensor, a.tensor + 0.5 * b.tensor)
    assert combo.tasks == {"sst2": 1.0, "yelp_polarity": 0.5}
    assert json.loads(combo.merge)["weights"] == {"sst2": 1.0, "yelp_polarity": 0.5}

    ties = tmp_path / "ties.tpv.safetensors"
    assert (
        main(
            [
                "vector",
                "combine",
                vector_files["sst2"],
                vector_files["imdb"],
                "--method",
                "ties",
                "--density",
                "0.5",
                "-o",
                str(ties),
            ]
        )
        == 0
    )
    assert json.loads(TaskPromptVector.load(ties).merge)["density"] == 0.5


def test_vector_similarity_text_json_and_plot(vector_files, tmp_path, capsys):
    files = [vector_files[t] for t in ("sst2", "yelp_polarity", "imdb")]
    assert main(["vector", "similarity", *files]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["sst2", "yelp_polarity", "imdb"] and lines[1].split()[1] == "1.000"
    png = tmp_path / "sim.png"
    assert main(["vector", "similarity", *files, "--json", "--plot", str(png)]) == 0
    payload = json.loads(capsys.readouterr().out)
    matrix = torch.tensor(payload["matrix"])
    assert payload["names"] == ["sst2", "yelp_polarity", "imdb"] and torch.allclose(matrix, matrix.T)
    expected = TaskPromptVector.load(files[0]).cosine(TaskPromptVector.load(files[1]))
    assert matrix[0, 1].item() == pytest.approx(expected, abs=1e-6)
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_train_init_eval_search_on_a_tiny_model(model_dir, vector_files, tmp_path, capsys, monkeypatch):
    from peft import PeftConfig, get_peft_model, load_peft_weights, set_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    model = ["--model", str(model_dir)]
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "sst2",
                "--output-dir",
                str(run),
                "--steps",
                "2",
                "--batch-size",
                "4",
                "--virtual-tokens",
                "4",
                "--limit",
                "8",
                "--eval-limit",
                "4",
                "--origin-seed",
                "3",
                *model,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "sst2.tpv.safetensors" in out and "macro_f1" in out
    trained = TaskPromptVector.load(run / "sst2.tpv.safetensors")
    assert trained.tasks == {"sst2": 1.0} and trained.shape == (4, 16) and trained.origin == "sample_vocab(seed=3)"

    # init: the written folder is a PEFT adapter whose prompt is origin + λ·(τ_a + τ_b)
    init_dir = tmp_path / "init"
    assert (
        main(
            [
                "init",
                str(run / "sst2.tpv.safetensors"),
                f"{vector_files['imdb']}:0.5",
                "--origin-seed",
                "7",
                "--scale",
                "0.8",
                "-o",
                str(init_dir),
                *model,
            ]
        )
        == 0
    )
    assert "wrote" in capsys.readouterr().out
    origin = Origin.load(init_dir / "tpv_origin.safetensors")
    assert origin.recipe == "sample_vocab(seed=7)"
    # PEFT refuses is_trainable=True for prompt learning; its documented route to train a saved prompt further:
    loaded = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), PeftConfig.from_pretrained(init_dir))
    set_peft_model_state_dict(loaded, load_peft_weights(init_dir))
    assert [n for n, p in loaded.named_parameters() if p.requires_grad] == ["prompt_encoder.default.embedding.weight"]
    combo = trained + 0.5 * TaskPromptVector.load(vector_files["imdb"])
    torch.testing.assert_close(get_prompt(loaded), combo.apply_to(origin, 0.8))

    # eval: a trained adapter, and vectors on an origin; JSON for scripts
    assert (
        main(
            [
                "eval",
                "--adapter",
                str(run),
                "--task",
                "sst2",
                "--split",
                "validation",
                "--limit",
                "6",
                "--json",
                "--dtype",
                "float32",
                *model,
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 6 and result["split"] == "validation" and result["source"] == str(run)
    # The same scores as the library gives for the trained adapter on those examples.
    from tpv.bridge.models import load_model
    from tpv.bridge.peft_io import load_prompt_adapter
    from tpv.data import load_split
    from tpv.engine.evaluation import evaluate

    base, tokenizer = load_model(model_dir, dtype="float32")
    expected = evaluate(load_prompt_adapter(base, run), tokenizer, "sst2", load_split("sst2", "validation")[:6])
    assert {k: result[k] for k in expected} == expected
    assert (
        main(["eval", "--vector", vector_files["sst2"], "--origin-seed", "1", "--task", "imdb", "--limit", "4", *model])
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("imdb test: macro_f1 ") and "(4 examples, rank)" in out

    # search: λ on validation data only
    assert (
        main(["search", str(run / "sst2.tpv.safetensors"), "--grid", "0,0.5,1", "--limit", "4", "--json", *model]) == 0
    )
    found = json.loads(capsys.readouterr().out)
    assert found["tasks"] == ["sst2"] and [p["scale"] for p in found["curve"]] == [0.0, 0.5, 1.0]
    assert found["best_scale"] in (0.0, 0.5, 1.0)


def test_train_reuses_a_finished_run(model_dir, tmp_path, capsys):
    argv = [
        "train",
        "sst2",
        "--output-dir",
        str(tmp_path / "run"),
        "--steps",
        "1",
        "--batch-size",
        "2",
        "--virtual-tokens",
        "2",
        "--limit",
        "4",
        "--eval-limit",
        "0",
        "--model",
        str(model_dir),
    ]
    assert main(argv) == 0
    first = capsys.readouterr().out.splitlines()
    assert main(argv) == 0
    again = capsys.readouterr().out.splitlines()
    assert "loss" not in " ".join(again)  # nothing trained the second time
    assert again[-2:] == first[-2:]

    # Other settings into the same folder: one line naming what differs and the two ways out; found once the
    # run folder is compared with the loaded model's run, so it is a failure of the work (1), not of usage.
    assert main([*argv, "--lr", "0.1"]) == 1
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    error = stderr.strip().splitlines()[-1]
    assert error.startswith("tpv: error: ")
    assert "learning_rate 0.3 there, 0.1 now" in error and "--overwrite" in error and "new output_dir" in error
    assert main([*argv, "--lr", "0.1", "--overwrite"]) == 0
    assert "reused the finished run" not in capsys.readouterr().err
    assert json.loads((tmp_path / "run" / "tpv_train.json").read_text())["settings"]["learning_rate"] == 0.1


def _documented_reproduce_commands():
    # Every `tpv reproduce …` a reader meets: the docs (results pages included), the README, the profiles'
    # comments, the command's own examples, and the line write_outputs puts at the top of each results page.
    from tpv.experiments import reproduce_command

    root = Path(__file__).resolve().parent.parent
    texts = [
        p.read_text(encoding="utf-8")
        for p in [
            root / "README.md",
            *sorted((root / "docs").rglob("*.md")),
            *sorted((root / "tpv" / "experiments" / "profiles").glob("*.toml")),
        ]
    ]
    reproduce_help = build_parser()._subparsers._group_actions[0].choices["reproduce"].format_help()
    texts += [reproduce_help, reproduce_command("cpu"), reproduce_command("cpu", "similarity")]
    found = set()
    for text in texts:
        for match in re.finditer(r"tpv reproduce((?: +(?:--?[a-z-]+|[a-z][\w-]*)(?![\w<]))*)", text):
            words = match.group(1).split()
            # An option whose value is a path, a shard (1/2) or a shell expression is kept out with its value.
            cut = min((words.index(option) for option in ("--run-dir", "--shard") if option in words), default=None)
            found.add(tuple(words[:cut]))
    return found


def test_every_documented_reproduce_command_parses_and_reaches_reproduce(monkeypatch, capsys, tmp_path):
    import inspect

    import tpv.experiments

    real = tpv.experiments.reproduce
    calls = []

    def spy(*args, **kwargs):
        inspect.signature(real).bind(*args, **kwargs)  # the CLI calls the real function's signature
        calls.append((args, kwargs))
        return "plan"

    monkeypatch.setattr(tpv.experiments, "reproduce", spy)
    commands = _documented_reproduce_commands()
    assert ("cpu",) in commands and ("cpu", "--study", "similarity") in commands  # the results pages' spelling
    for words in commands:
        assert main(["reproduce", *words, "--run-dir", str(tmp_path), "--dry-run"]) == 0, words
        (profile,), options = calls.pop()
        assert profile in tpv.experiments.PROFILES, words
        assert options["dry_run"] is True and options["run_dir"] == str(tmp_path)
    capsys.readouterr()

    # The spellings mean the same: positional or --profile, --study or --studies, repeatable.
    for argv in (
        ["cpu", "--study", "similarity", "--studies", "few_shot"],
        ["--profile", "cpu", "--studies", "similarity", "--study", "few_shot"],
    ):
        assert main(["reproduce", *argv, "--run-dir", str(tmp_path)]) == 0
        assert calls.pop() == (
            ("cpu",),
            {
                "studies": ["similarity", "few_shot"],
                "run_dir": str(tmp_path),
                "dry_run": False,
                "progress": True,
                "shard": None,
            },
        )
    assert main(["reproduce", "transfer-cpu", "--shard", "2/3", "--run-dir", str(tmp_path)]) == 0
    assert calls.pop()[1]["shard"] == "2/3"
    assert main(["reproduce"]) == 0 and calls.pop()[0] == ("smoke",)
    assert main(["reproduce", "cpu", "--profile", "gpu"]) == 2
    assert "two profiles, 'cpu' and --profile 'gpu'" in _error_line(capsys)
    # Usage errors found before reproduce() is called: exit 2, nothing planned.
    assert main(["reproduce", "no-such-profile"]) == 2 and "no profile 'no-such-profile'" in _error_line(capsys)
    assert main(["reproduce", "cpu", "--study", "simlarity"]) == 2
    assert "unknown --study simlarity; choose from origin_independence" in _error_line(capsys)
    assert calls == []


def test_reproduce_without_experiments_is_a_one_line_error(monkeypatch, capsys):
    # None in sys.modules makes `import tpv.experiments` raise ImportError, as on an install without it.
    monkeypatch.setitem(sys.modules, "tpv.experiments", None)
    assert main(["reproduce", "--profile", "smoke"]) == 1  # the installation lacks it: not a usage error
    assert "tpv.experiments" in _error_line(capsys)


def test_console_script():
    executable = shutil.which("tpv")
    command = [executable] if executable else [sys.executable, "-m", "tpv"]
    done = subprocess.run([*command, "vector", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "tpv vector info" in done.stdout
    done = subprocess.run(
        [*command, "vector", "info", "missing.tpv.safetensors"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


@pytest.mark.parametrize("module", ["tpv", "tpv.cli"])  # `accelerate launch -m tpv.cli train …` runs the second
def test_python_dash_m_runs_the_command(module):
    done = subprocess.run([sys.executable, "-m", module, "zoo", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "usage: tpv zoo" in done.stdout


def test_help_imports_neither_torch_nor_transformers():
    # `tpv --help` must answer at once; torch alone takes seconds to import (benchmarks/cli_startup.py times it).
    code = (
        "import sys\nfrom tpv.cli import main\n"
        "codes = [main(argv) for argv in (['--help'], ['train', '--help'], ['vector', 'combine', '--help'])]\n"
        "print(codes, [m for m in ('torch', 'transformers', 'peft') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[0, 0, 0] []"


def test_merge_method_names_match_the_library():
    from tpv.cli import MERGE_METHOD_NAMES
    from tpv.compose.merge import MERGE_METHODS

    assert sorted(MERGE_METHOD_NAMES) == sorted(MERGE_METHODS)


def test_every_option_has_help_text():
    import argparse

    missing = []

    def walk(parser, words):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*words, name])
            elif not action.help:
                missing.append(" ".join([*words, *(action.option_strings or [action.dest])]))

    walk(build_parser(), ["tpv"])
    assert missing == []
    eval_help = build_parser()._subparsers._group_actions[0].choices["eval"].format_help()
    assert "--max-length N" in eval_help and "registered task" in eval_help


def test_vector_info_reads_an_adapter_folder(model_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "sst2",
                "--output-dir",
                str(run),
                "--steps",
                "1",
                "--batch-size",
                "2",
                "--virtual-tokens",
                "2",
                "--limit",
                "4",
                "--eval-limit",
                "0",
                "--model",
                str(model_dir),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["vector", "info", str(run), "--json"]) == 0
    [info] = json.loads(capsys.readouterr().out)
    assert info["tasks"] == {"sst2": 1.0} and info["shape"] == [2, 16]
    # Without the vector file beside it, the adapter's own prompt and origin give the same vector.
    (run / "sst2.tpv.safetensors").unlink()
    assert main(["vector", "info", str(run), "--json"]) == 0
    [from_adapter] = json.loads(capsys.readouterr().out)
    assert from_adapter["shape"] == [2, 16] and abs(from_adapter["norm"] - info["norm"]) < 1e-4
    # A folder that is neither says so, and what to pass.
    assert main(["vector", "info", str(tmp_path)]) == 2
    assert "is a folder, not a vector file" in _error_line(capsys)


def test_eval_max_length_is_passed_and_checked(model_dir, vector_files, capsys, monkeypatch):
    import tpv.engine.evaluation

    seen = {}
    real = tpv.engine.evaluation.evaluate

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(tpv.engine.evaluation, "evaluate", spy)
    argv = ["eval", "--vector", vector_files["sst2"], "--task", "sst2", "--limit", "2", "--model", str(model_dir)]
    assert main([*argv, "--max-length", "24"]) == 0 and seen["max_length"] == 24
    capsys.readouterr()
    assert main([*argv, "--max-length", "0"]) == 2
    assert "--max-length must be a positive number of tokens, got 0" in _error_line(capsys)


def test_train_verbose_prints_trainer_records(model_dir, tmp_path, capfd):
    argv = [
        "train",
        "sst2",
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--virtual-tokens",
        "2",
        "--limit",
        "4",
        "--eval-limit",
        "0",
        "--model",
        str(model_dir),
    ]
    assert main([*argv, "--output-dir", str(tmp_path / "quiet")]) == 0
    out, err = capfd.readouterr()
    assert "{'loss'" not in out + err and "trained sst2: 2 steps" in err
    assert main([*argv, "--output-dir", str(tmp_path / "loud"), "--verbose"]) == 0
    out, err = capfd.readouterr()
    assert "{'loss'" in out + err or "{'train_runtime'" in out + err


def test_train_passes_training_arguments_through(model_dir, tmp_path, capsys):
    argv = [
        "train",
        "sst2",
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--virtual-tokens",
        "2",
        "--limit",
        "4",
        "--eval-limit",
        "0",
        "--model",
        str(model_dir),
        "--output-dir",
        str(tmp_path / "run"),
    ]
    assert (
        main(
            [
                *argv,
                "--training-arg",
                "gradient_accumulation_steps=2",
                "--training-arg",
                "logging-steps=1",
                "--training-arg",
                "report_to=none",
            ]
        )
        == 0
    )
    capsys.readouterr()
    record = json.loads((tmp_path / "run" / "tpv_train.json").read_text())
    assert record["settings"]["training_args"] == {
        "gradient_accumulation_steps": 2,
        "logging_steps": 1.0,
        "report_to": "none",
    }
    # Two optimizer steps of 2 × 2 examples went through all 4 examples twice: accumulation took effect.
    assert [entry["step"] for entry in record["history"] if "loss" in entry] == [1, 2]
    assert record["history"][-1]["epoch"] == 2.0


@pytest.mark.parametrize(
    "pair, message",
    [
        (
            "gradient_accumulation_step=2",
            "'gradient_accumulation_step', which is not a TrainingArguments field; did you "
            "mean 'gradient_accumulation_steps'",
        ),
        ("gradient_accumulation_steps", "--training-arg takes KEY=VALUE, got 'gradient_accumulation_steps'"),
        ("gradient_accumulation_steps=two", "--training-arg gradient_accumulation_steps='two' is not a valid value"),
        ("bf16=maybe", "--training-arg bf16='maybe' is not a valid value for TrainingArguments.bf16"),
        ("lr_scheduler_type=wobbly", "--training-arg lr_scheduler_type='wobbly' is not a valid value"),
        ("max_steps=5", "--training-arg max_steps=… sets what --steps sets; use --steps instead"),
        ("output_dir=elsewhere", "sets what --output-dir sets; use --output-dir instead"),
    ],
)
def test_bad_training_args_are_one_line_before_the_model_loads(pair, message, tmp_path, capsys, monkeypatch):
    import tpv.bridge.models

    monkeypatch.setattr(tpv.bridge.models, "load_model", lambda *a, **k: pytest.fail("loaded the model"))
    assert main(["train", "sst2", "--limit", "4", "--output-dir", str(tmp_path), "--training-arg", pair]) == 2
    assert message in _error_line(capsys)
