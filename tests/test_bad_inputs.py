"""The bad-input catalogue (issue 10, items 4–13): every case is one TPVError that names the value and the fix,
or, at the command line, exit status 2 and one line on stderr with no traceback."""

import json
import os
import pickle
import re
import stat
import time

import pytest
import torch
from safetensors.torch import save_file

from conftest import TINY_MODELS
from tpv import Origin, TaskPromptVector, TPVError, combine, make_origin, merge, similarity_matrix
from tpv.bridge.hub import push_to_hub, read_card, save_pretrained
from tpv.bridge.peft_io import ORIGIN_FILENAME, init_prompt_tuning
from tpv.cli import main
from tpv.core._io import STALE_TEMP_SECONDS, atomic_write_text
from tpv.core.provenance import merge_record
from tpv.data import load_split

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _vector(tasks=None, rows=4, dim=8, seed=0, **fields) -> TaskPromptVector:
    generator = torch.Generator().manual_seed(seed)
    return TaskPromptVector(torch.randn(rows, dim, generator=generator), tasks=tasks or {"sst2": 1.0}, **fields)


def _metadata(path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata())


def _rewrite(path, tensors=None, **changes) -> str:
    """Re-save a tpv file with some metadata changed (None deletes a key) or other tensors."""
    from safetensors.torch import load_file

    metadata = _metadata(path)
    for key, value in changes.items():
        if value is None:
            metadata.pop(key, None)
        else:
            metadata[key] = value
    save_file(tensors if tensors is not None else load_file(str(path)), str(path), metadata=metadata)
    return str(path)


def _cli_error(capsys, argv, status: int = 2) -> str:
    # 2: a usage error, found before any work; 1: the work failed (tpv --help, "exit status").
    assert main(argv) == status
    err = capsys.readouterr().err.strip()
    # Progress bars (e.g. transformers' "Loading weights") may come first; the error is one line, the last.
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "it/s]" not in line.split("\r")[-1]]
    assert len(lines) == 1 and lines[0].startswith("tpv: error: "), err
    return lines[0]


# ---- 4. file-system errors --------------------------------------------------------------------------------


def _writers(tmp_path):
    vector = _vector()
    origin = Origin(torch.zeros(4, 8), num_virtual_tokens=4)
    return {
        "vector.save": vector.save,
        "origin.save": origin.save,
        "atomic_write_text": lambda path: atomic_write_text(path, "text"),
    }


@pytest.mark.parametrize("writer", ["vector.save", "origin.save", "atomic_write_text"])
def test_writing_to_a_folder_names_it(writer, tmp_path):
    with pytest.raises(TPVError, match=f"cannot write '{tmp_path}': it is a folder; pass a file path inside it"):
        _writers(tmp_path)[writer](tmp_path)


@pytest.mark.parametrize("writer", ["vector.save", "origin.save", "atomic_write_text"])
def test_writing_below_a_file_names_it(writer, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(
        TPVError, match=r"cannot write '.*a_file.*': (a part of the path is a file|a file is in the way)"
    ):
        _writers(tmp_path)[writer](blocker / "sub" / "out.tpv.safetensors")


@pytest.mark.parametrize("path", ["", "."])
@pytest.mark.parametrize("writer", ["vector.save", "origin.save", "atomic_write_text"])
def test_writing_to_an_empty_path(writer, path, tmp_path):
    with pytest.raises(TPVError, match=f"cannot write to the path {path!r}; pass a file name"):
        _writers(tmp_path)[writer](path)


@pytest.mark.parametrize("writer", ["vector.save", "origin.save", "atomic_write_text"])
def test_permission_denied_on_write_is_one_tpv_error(writer, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "locked"))

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(TPVError, match="cannot write '.*locked': permission denied; pick a path you may write"):
        _writers(tmp_path)[writer](tmp_path / "locked" / "x.tpv.safetensors")
    assert not any(tmp_path.rglob("*.tmp")), "the temporary file must be removed"


@pytest.mark.skipif(IS_ROOT, reason="root ignores file permissions")
def test_read_only_folder_and_unreadable_file(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    path = _vector().save(tmp_path / "v.tpv.safetensors")
    folder.chmod(0o500)
    path.chmod(0o000)
    try:
        with pytest.raises(TPVError, match="permission denied"):
            _vector().save(folder / "v.tpv.safetensors")
        with pytest.raises(TPVError, match=f"^cannot read '{re.escape(str(path))}': permission denied"):
            TaskPromptVector.load(path)
    finally:
        folder.chmod(0o700)
        path.chmod(0o600)


@pytest.mark.parametrize("loader", [TaskPromptVector.load, Origin.load])
def test_reading_a_folder_or_nothing(loader, tmp_path):
    with pytest.raises(TPVError, match=f"'{tmp_path}' is a folder; pass the path of a"):
        loader(tmp_path)
    with pytest.raises(TPVError, match="a file path is needed"):
        loader("")
    with pytest.raises(TPVError, match="no such file: .*missing"):
        loader(tmp_path / "missing.tpv.safetensors")


@pytest.mark.parametrize(
    "error, shown",
    [
        (IsADirectoryError(21, "Is a directory", "/some/folder"), "cannot use '/some/folder': it is a folder"),
        (PermissionError(13, "Permission denied", "/etc/x"), "cannot use '/etc/x': permission denied"),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), "a file is not UTF-8 text"),
        (pickle.UnpicklingError("Weights only load failed"), "refused to unpickle a file (Weights only load failed)"),
    ],
)
def test_cli_maps_errors_raised_inside_other_libraries(error, shown, capsys, monkeypatch):
    import tpv.cli.app

    def boom(args):
        raise error

    parser_run = tpv.cli.app.build_parser
    monkeypatch.setattr(tpv.cli.app, "build_parser", lambda: _with_run(parser_run(), boom))
    assert shown in _cli_error(capsys, ["vector", "info", "x"], status=1)


def _with_run(parser, run):
    parser.set_defaults(run=run)
    for action in parser._subparsers._group_actions:
        for sub in action.choices.values():
            sub.set_defaults(run=run)
            if sub._subparsers:
                for inner in sub._subparsers._group_actions:
                    for leaf in inner.choices.values():
                        leaf.set_defaults(run=run)
    return parser


def test_cli_output_that_is_a_folder(tmp_path, capsys):
    path = _vector().save(tmp_path / "a.tpv.safetensors")
    err = _cli_error(capsys, ["vector", "combine", str(path), "-o", str(tmp_path)])
    assert f"'{tmp_path}': it is a folder" in err


# ---- 5. parseable but malformed content -------------------------------------------------------------------


@pytest.mark.parametrize(
    "tasks, shown",
    [
        ('["sst2"]', "tasks='\\[\"sst2\"\\]' is not a JSON object"),
        ('"sst2"', "is not a JSON object"),
        ("null", "tasks='null' is not a JSON object"),
        ("{", "is not a JSON object"),
        ('{"sst2": "x"}', "the coefficient of task 'sst2' must be a finite real number, got 'x'"),
        ('{"sst2": null}', "the coefficient of task 'sst2' must be a finite real number, got None"),
        ('{"sst2": NaN}', "the coefficient of task 'sst2' must be a finite real number, got nan"),
        ('{"": 1}', "task names must be non-empty strings"),
    ],
)
def test_malformed_tasks_metadata(tasks, shown, tmp_path):
    path = _rewrite(_vector().save(tmp_path / "v.tpv.safetensors"), tasks=tasks)
    with pytest.raises(TPVError, match=shown):
        TaskPromptVector.load(path)


@pytest.mark.parametrize("record", ["{", "[1, 2]", '"text"', "3"])
def test_malformed_merge_metadata_leaves_the_tensor_readable(record, tmp_path):
    # The record only describes how the vector was made: the intact tensor loads, with a warning giving the fix.
    vector = _vector()
    path = _rewrite(vector.save(tmp_path / "v.tpv.safetensors"), merge=record)
    command = f"tpv.TaskPromptVector.load({path!r}).save({path!r})"
    with pytest.warns(UserWarning, match=f"holds a merge record tpv cannot read .*To drop it .*{re.escape(command)}"):
        loaded = TaskPromptVector.load(path)
    assert torch.equal(loaded.tensor, vector.tensor) and loaded.tasks == vector.tasks and loaded.merge is None
    with pytest.warns(UserWarning, match="holds a merge record tpv cannot read"):
        exec(command, {"tpv": __import__("tpv")})  # the command the warning gives (it warns once more, then saves)
    assert "merge" not in _metadata(path) and torch.equal(TaskPromptVector.load(path).tensor, vector.tensor)


@pytest.mark.parametrize(
    "changes, shown",
    [
        ({"num_virtual_tokens": None}, "num_virtual_tokens=None is not an integer ≥ 1"),
        ({"num_virtual_tokens": "x"}, "num_virtual_tokens='x' is not an integer ≥ 1"),
        ({"num_transformer_submodules": "0"}, "num_transformer_submodules='0' is not an integer ≥ 1"),
        ({"seed": "x"}, "seed='x' is not an integer"),
        ({"method": "magic"}, "unknown origin method 'magic'"),
        ({"token_dim": "9"}, "token_dim=9; the file is damaged"),
        ({"format": "tpv/1"}, "format='tpv/1', not 'tpv-origin/1'"),
    ],
)
def test_malformed_origin_metadata(changes, shown, tmp_path):
    path = tmp_path / "o.origin.safetensors"
    Origin(torch.zeros(4, 8), num_virtual_tokens=4, seed=0, method="normal").save(path)
    _rewrite(path, **changes)
    with pytest.raises(TPVError, match=shown):
        Origin.load(path)


@pytest.fixture
def adapter_dir(tmp_path, make_tiny_model):
    model = make_tiny_model("llama")
    peft_model = init_prompt_tuning(model, origin=make_origin(model, 4, seed=0))
    folder = tmp_path / "adapter"
    peft_model.save_pretrained(folder)
    return folder


@pytest.mark.parametrize(
    "content, shown",
    [
        (b"{not json", "is not valid JSON"),
        (b"[1, 2]", "holds a JSON list, not an object"),
        (b"\xff\xfe{}", "is not UTF-8 text"),
        (b'{"peft_type": "PROMPT_TUNING", "num_virtual_tokens": "4"}', "num_virtual_tokens='4', not an integer ≥ 1"),
        (b'{"peft_type": "LORA"}', "is a LORA adapter, but task prompt vectors need a PROMPT_TUNING adapter"),
    ],
)
def test_malformed_adapter_config(content, shown, adapter_dir):
    (adapter_dir / "adapter_config.json").write_bytes(content)
    with pytest.raises(TPVError, match=shown):
        TaskPromptVector.from_peft(adapter_dir)


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/tpv-pwned",))


@pytest.mark.parametrize(
    "payload",
    [
        pickle.dumps({"prompt_embeddings": _Payload()}),
        b"\x80\x04not a pickle at all",
        pickle.dumps([1, 2, 3]),
        b"",
    ],
)
def test_pickles_in_adapter_model_bin(payload, adapter_dir):
    (adapter_dir / "adapter_model.safetensors").unlink()
    (adapter_dir / "adapter_model.bin").write_bytes(payload)
    with pytest.raises(TPVError, match="adapter_model.bin' (is not a plain PyTorch tensor file|holds a list)"):
        TaskPromptVector.from_peft(adapter_dir)
    assert not os.path.exists("/tmp/tpv-pwned")


def test_a_plain_adapter_model_bin_still_loads(adapter_dir):
    from safetensors.torch import load_file

    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    (adapter_dir / "adapter_model.safetensors").unlink()
    torch.save(tensors, adapter_dir / "adapter_model.bin")
    assert TaskPromptVector.from_peft(adapter_dir).shape == (4, 16)


@pytest.mark.parametrize(
    "suffix, content",
    [
        (".jsonl", b'{"sentence": "caf\xe9", "label": 0}\n'),
        (".csv", b"sentence,label\ncaf\xe9,0\n"),
    ],
)
def test_non_utf8_data_files(suffix, content, tmp_path):
    (tmp_path / "sst2").mkdir()
    (tmp_path / "sst2" / f"train{suffix}").write_bytes(content)
    with pytest.raises(TPVError, match=rf"train\{suffix}' is not UTF-8 text .*save the file as UTF-8"):
        load_split("sst2", "train", tmp_path)


def test_non_utf8_profile(tmp_path):
    from tpv.experiments.config import load_config

    path = tmp_path / "p.toml"
    path.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(TPVError, match="p.toml' is not UTF-8 text .*save the profile as UTF-8"):
        load_config(path)


def test_a_data_path_that_is_a_folder(tmp_path):
    (tmp_path / "sst2" / "train.jsonl").mkdir(parents=True)
    (tmp_path / "sst2" / "train.csv").write_text("sentence,label\nok,0\n")
    assert load_split("sst2", "train", tmp_path) == [{"sentence": "ok", "label": 0}]


# ---- 6. merge records whose names contain " | " ----------------------------------------------------------


def test_merge_record_with_the_separator_in_a_name_round_trips(tmp_path, capsys):
    a, b = _vector({"a | b": 1.0}), _vector({"c": 1.0}, seed=1)
    merged = merge({"x | y": a, "z": b}, method="ties", density=1.0)
    summed = merged + merge({"p | q": b, "r": a}, method="mean")
    path = summed.save(tmp_path / "s.tpv.safetensors")
    record = merge_record(TaskPromptVector.load(path))
    assert sorted(r["method"] for r in record["combined"]) == ["mean", "ties"]
    assert {"x | y", "z"} == set(next(r for r in record["combined"] if r["method"] == "ties")["weights"])
    a_path, b_path = a.save(tmp_path / "a.tpv.safetensors"), b.save(tmp_path / "b.tpv.safetensors")
    out = tmp_path / "m.tpv.safetensors"
    assert main(["vector", "combine", str(a_path), str(b_path), "--method", "ties", "-o", str(out)]) == 0
    assert main(["vector", "info", "--json", str(out), str(path)]) == 0
    infos = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert set(infos[0]["merge"]["weights"]) == {"a | b", "c"}


def test_legacy_merge_records_joined_by_the_separator_still_read(tmp_path):
    legacy = '{"method":"sum","weights":{"a":1.0}} | {"method":"mean","weights":{"b":1.0}}'
    path = _rewrite(_vector().save(tmp_path / "v.tpv.safetensors"), merge=legacy)
    assert [r["method"] for r in merge_record(TaskPromptVector.load(path))["combined"]] == ["sum", "mean"]


# ---- 7. invalid vectors must not load ---------------------------------------------------------------------


def _save_raw(path, tensor, **changes):
    good = _vector().save(path)
    return _rewrite(good, tensors={"task_prompt_vector": tensor}, **{"token_dim": str(tensor.shape[-1]), **changes})


@pytest.mark.parametrize(
    "tensor, changes, shown",
    [
        (
            torch.ones(4, 8),
            {"num_virtual_tokens": "-4", "num_transformer_submodules": "-1"},
            "num_virtual_tokens='-4' is not an integer ≥ 1",
        ),
        (
            torch.ones(4, 8),
            {"num_transformer_submodules": "-1"},
            "num_transformer_submodules='-1' is not an integer ≥ 1",
        ),
        (torch.ones(0, 8), {"num_virtual_tokens": "0"}, "num_virtual_tokens='0' is not an integer ≥ 1"),
        (
            torch.ones(4, 8, dtype=torch.int32),
            {},
            "stores 'task_prompt_vector' as torch.int32, but tpv/1 files hold float32",
        ),
        (torch.ones(4, 8, dtype=torch.bool), {}, "as torch.bool"),
        (torch.ones(4, 8, dtype=torch.float64), {}, "as torch.float64, but tpv/1 files hold float32"),
        (torch.ones(4, 8, dtype=torch.complex64), {}, "as torch.complex64"),
        (torch.ones(4, 8), {"token_dim": "16"}, r"shape \(4, 8\), but its metadata says .*token_dim=16"),
        (torch.ones(4, 8), {"num_virtual_tokens": "2"}, r"shape \(4, 8\), but its metadata says num_virtual_tokens=2"),
        (torch.ones(4), {}, r"shape \(4,\)"),
        (torch.full((4, 8), float("nan")), {}, "holds 32 NaN/inf values of 32"),
    ],
)
def test_invalid_vector_files(tensor, changes, shown, tmp_path):
    try:
        path = _save_raw(tmp_path / "v.tpv.safetensors", tensor, **changes)
    except (TypeError, ValueError):
        pytest.skip(f"safetensors cannot store {tensor.dtype}")
    with pytest.raises(TPVError, match=shown):
        TaskPromptVector.load(path)


@pytest.mark.parametrize(
    "tensor, shown",
    [
        (torch.ones(0, 8), r"is empty \(shape \(0, 8\)\)"),
        (torch.ones(4, 0), r"is empty \(shape \(4, 0\)\)"),
        (torch.ones(4, 8, dtype=torch.int64), "has dtype torch.int64, but soft prompts are real floating-point"),
        (torch.ones(4, 8, dtype=torch.bool), "has dtype torch.bool"),
        (torch.ones(4, 8, dtype=torch.complex64), r"has dtype torch.complex64.*\(tensor.real\)"),
        (torch.full((4, 8), 1e300, dtype=torch.float64), "float64 values up to 1e\\+300, beyond float32's range"),
        (torch.full((4, 8), float("inf")), "holds 32 NaN/inf values"),
        ("not a tensor", "must be a torch.Tensor, got a str"),
    ],
)
@pytest.mark.parametrize("make", ["vector", "origin", "from_prompts"])
def test_invalid_tensors_in_memory(make, tensor, shown):
    with pytest.raises(TPVError, match=shown):
        if make == "vector":
            TaskPromptVector(tensor, tasks={"a": 1.0})
        elif make == "origin":
            Origin(tensor, num_virtual_tokens=max(1, getattr(tensor, "shape", [1])[0]))
        else:
            TaskPromptVector.from_prompts(tensor, Origin(torch.zeros(4, 8), num_virtual_tokens=4))


def test_float64_is_rounded_to_float32_explicitly():
    tensor = torch.full((2, 3), 1 / 3, dtype=torch.float64)
    vector = TaskPromptVector(tensor, tasks={"a": 1.0})
    assert vector.tensor.dtype == torch.float32
    assert torch.equal(vector.tensor, tensor.float())


@pytest.mark.parametrize(
    "fields, shown",
    [
        (
            {"num_virtual_tokens": -2, "num_transformer_submodules": -2},
            "num_transformer_submodules must be an integer ≥ 1, got -2",
        ),
        ({"num_virtual_tokens": 2.0}, "num_virtual_tokens must be an integer ≥ 1, got 2.0"),
        ({"num_virtual_tokens": True}, "num_virtual_tokens must be an integer ≥ 1, got True"),
        ({"tasks": {"a": float("nan")}}, "the coefficient of task 'a' must be a finite real number, got nan"),
        ({"tasks": ["a"]}, "tasks must map task names to coefficients"),
        ({"base_model": 5}, "base_model must be a string, got 5"),
    ],
)
def test_invalid_vector_fields(fields, shown):
    with pytest.raises(TPVError, match=shown):
        TaskPromptVector(torch.ones(4, 8), **{"tasks": {"a": 1.0}, **fields})


@pytest.mark.parametrize(
    "fields, shown",
    [
        ({"num_virtual_tokens": -4}, "num_virtual_tokens must be an integer ≥ 1, got -4"),
        ({"seed": "x"}, "seed must be an int or None, got 'x'"),
        ({"seed": True}, "seed must be an int or None, got True"),
        ({"options": {"std": 1.0}}, "options must map names to strings"),
    ],
)
def test_invalid_origin_fields(fields, shown):
    with pytest.raises(TPVError, match=shown):
        Origin(torch.ones(4, 8), **{"num_virtual_tokens": 4, **fields})


# ---- 8. base models and shapes ----------------------------------------------------------------------------


def test_similarity_refuses_different_base_models_like_cosine(tmp_path, capsys):
    a, b = _vector(base_model="m/a"), _vector({"b": 1.0}, seed=1, base_model="m/b")
    with pytest.raises(TPVError, match="cannot compare .*from different base models"):
        a.cosine(b)
    with pytest.raises(TPVError, match=r"different base models \['m/a', 'm/b'\].*pass vectors of one base model"):
        similarity_matrix({"a": a, "b": b})
    paths = [str(a.save(tmp_path / "a.tpv.safetensors")), str(b.save(tmp_path / "b.tpv.safetensors"))]
    # The files read fine (no usage error); comparing them is the work that fails: exit 1.
    assert "different base models" in _cli_error(capsys, ["vector", "similarity", *paths], status=1)


def test_cosine_refuses_other_shapes_and_non_tensors():
    vector = _vector()
    with pytest.raises(
        TPVError, match=r"shape \(4, 8\) with a tensor of shape \(6, 8\); pass a tensor of shape \(4, 8\)"
    ):
        vector.cosine(torch.ones(6, 8))
    with pytest.raises(TPVError, match="cannot compare a vector with a str \\('b'\\)"):
        vector.cosine("b")
    assert vector.cosine(vector.tensor.clone()) == pytest.approx(1.0)


def test_init_prompt_tuning_refuses_an_origin_of_another_model(make_tiny_model):
    model = make_tiny_model("llama")
    model.config._name_or_path = "org/model-a"
    origin = make_origin(model, 4, seed=0)
    other = make_tiny_model("llama")
    other.config._name_or_path = "org/model-b"
    with pytest.raises(TPVError, match="origin was made for 'org/model-a' but this model is 'org/model-b'"):
        init_prompt_tuning(other, origin=origin)


def test_from_peft_refuses_an_origin_naming_another_base(adapter_dir):
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "org/model-a"
    (adapter_dir / "adapter_config.json").write_text(json.dumps(config))
    origin = Origin.load(adapter_dir / ORIGIN_FILENAME)
    Origin(origin.tensor, num_virtual_tokens=4, base_model="org/model-b").save(adapter_dir / ORIGIN_FILENAME)
    with pytest.raises(
        TPVError, match="origin was made for 'org/model-b' but the adapter's base model is 'org/model-a'"
    ):
        TaskPromptVector.from_peft(adapter_dir)


def _gpt2_adapter(folder, n_embd=24):
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(vocab_size=128, n_embd=n_embd, n_layer=1, n_head=2))
    init_prompt_tuning(model, origin=make_origin(model, 4, seed=0)).save_pretrained(folder)
    return folder


def test_eval_adapter_of_another_token_dim_fails_before_scoring(model_dir, tmp_path, capsys):
    adapter = _gpt2_adapter(tmp_path / "adapter")
    # The mismatch shows only once the model is loaded: a failure of the work (exit 1), still before scoring.
    err = _cli_error(
        capsys,
        ["eval", "--adapter", str(adapter), "--task", "sst2", "--limit", "2", "--model", str(model_dir)],
        status=1,
    )
    assert "has token_dim 24" in err and "the model's embeddings have 16" in err and "--model" in err


def test_eval_of_a_lora_folder_fails_before_loading(model_dir, tmp_path, capsys):
    folder = tmp_path / "lora"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    err = _cli_error(
        capsys, ["eval", "--adapter", str(folder), "--task", "sst2", "--limit", "2", "--model", str(model_dir)]
    )
    assert "is a LORA adapter, but task prompt vectors need a PROMPT_TUNING adapter" in err


@pytest.mark.slow
def test_eval_adapter_of_another_token_dim_on_the_default_model(tmp_path, capsys):
    adapter = _gpt2_adapter(tmp_path / "adapter")
    err = _cli_error(capsys, ["eval", "--adapter", str(adapter), "--task", "sst2", "--limit", "2"], status=1)
    assert "has token_dim 24" in err and "the model's embeddings have 576" in err


# ---- 9. file modes follow the umask ----------------------------------------------------------------------


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(umask, mode, tmp_path):
    pytest.importorskip("matplotlib")
    from tpv.experiments.plots import plot_similarity

    old = os.umask(umask)
    try:
        paths = [
            _vector().save(tmp_path / "v.tpv.safetensors"),
            atomic_write_text(tmp_path / "r.json", "{}"),
            plot_similarity(["a", "b"], torch.eye(2), tmp_path / "s.png"),
        ]
        Origin(torch.zeros(2, 3), num_virtual_tokens=2).save(tmp_path / "o.origin.safetensors")
        paths.append(tmp_path / "o.origin.safetensors")
    finally:
        os.umask(old)
    assert {oct(stat.S_IMODE(os.stat(p).st_mode)) for p in paths} == {oct(mode)}


# ---- 10. huge foreign files and leftovers of killed writes -----------------------------------------------


def test_rejecting_a_huge_foreign_file_reads_only_its_head(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "huge.tpv.safetensors"
    with path.open("wb") as handle:  # sparse: costs no disk
        handle.write(b"PK\x03\x04")
        handle.truncate(1 << 30)
    code = (
        "import resource, sys\n"
        "from tpv import TaskPromptVector, TPVError\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        f"    TaskPromptVector.load({str(path)!r})\n"
        "except TPVError as error:\n"
        "    print(error)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert "it is a zip archive" in out[0]
    assert int(out[1]) < 100_000, f"peak memory grew by {int(out[1]) // 1024} MiB"  # ru_maxrss is in KiB


def test_stale_temporaries_of_killed_writes_are_removed(tmp_path):
    target = tmp_path / "v.tpv.safetensors"
    stale = tmp_path / ".v.tpv.safetensors.abc123.tmp"
    fresh = tmp_path / ".v.tpv.safetensors.def456.tmp"
    other = tmp_path / ".other.tpv.safetensors.xyz.tmp"
    for leftover in (stale, fresh, other):
        leftover.write_bytes(b"half a file")
    old = time.time() - STALE_TEMP_SECONDS - 60
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    _vector().save(target)
    assert not stale.exists(), "a temporary older than an hour is a killed write's"
    assert fresh.exists(), "a recent temporary may belong to a write in progress"
    assert other.exists(), "only the temporaries of the file being written are touched"


def test_stale_model_cache_conversions_are_removed(tmp_path, monkeypatch):
    import tpv.bridge.models as models

    monkeypatch.setenv("TPV_CACHE", str(tmp_path))
    folder = tmp_path / "models"
    leftover = folder / ".SmolLM2-135M-Instruct.abc123"
    (leftover / "sub").mkdir(parents=True)
    (leftover / "sub" / "model.safetensors").write_bytes(b"x" * 100)
    old = time.time() - STALE_TEMP_SECONDS - 60
    os.utime(leftover, (old, old))
    monkeypatch.setattr(models, "default_gguf_path", lambda: (_ for _ in ()).throw(TPVError("no gguf here")))
    with pytest.raises(TPVError, match="no gguf here"):
        models.default_model_path()
    assert not leftover.exists()


# ---- 11. messages that say what is wrong ------------------------------------------------------------------


def test_a_vector_file_without_its_tensor_is_not_called_a_vector_file(tmp_path):
    path = _rewrite(_vector().save(tmp_path / "v.tpv.safetensors"), tensors={"other": torch.ones(4, 8)})
    with pytest.raises(TPVError, match="has tpv/1 metadata but no 'task_prompt_vector' tensor .*'other'") as info:
        TaskPromptVector.load(path)
    assert "it is a task prompt vector file" not in str(info.value)


def test_eval_limit_is_named_as_itself(tmp_path, capsys, model_dir):
    err = _cli_error(
        capsys, ["train", "sst2", "--output-dir", str(tmp_path), "--eval-limit", "-3", "--model", str(model_dir)]
    )
    assert "--eval-limit must be ≥ 0" in err and "--limit" not in err.replace("--eval-limit", "")


def test_search_without_a_positive_task_asks_for_task(tmp_path, capsys, model_dir):
    path = _vector().__neg__().save(tmp_path / "neg.tpv.safetensors")
    err = _cli_error(capsys, ["search", str(path), "--model", str(model_dir)])
    assert "no task with a positive coefficient (-1·sst2)" in err and "--task" in err


def test_a_missing_model_folder_is_called_a_missing_folder(tmp_path, capsys):
    from tpv.bridge.models import load_model

    missing = tmp_path / "no" / "such" / "model"
    with pytest.raises(TPVError, match=f"no model folder at '{missing}'") as info:
        load_model(missing)
    assert "Repo id" not in str(info.value)


def test_float32_overflow_is_not_called_divergence():
    with pytest.raises(TPVError, match="multiplying by 1e\\+39 overflows float32") as info:
        _vector() * 1e39
    assert "learning rate" not in str(info.value)
    big = _vector() * 1e38
    with pytest.raises(TPVError, match="overflows float32"):
        big + big


# ---- 12. other raw exceptions and silent acceptances ------------------------------------------------------


@pytest.mark.parametrize(
    "call, shown",
    [
        (lambda v: combine([(v, 1, 2)]), r"pairs are \(vector, weight\), got 3 items"),
        (lambda v: combine([(v, "x")]), "combine a vector with weight 'x': a real number is needed"),
        (lambda v: merge([v, v], weights=5), "merge weights must be a list .* got 5"),
        (lambda v: merge([v, v], weights="ab"), "merge weights must be a list"),
        (lambda v: v.to("banana"), "cannot move a vector to 'banana'"),
        (lambda v: push_to_hub(v, "user/.."), r"bad Hub repo id 'user/\.\.'"),
        (lambda v: push_to_hub(v, "user/a--b"), "bad Hub repo id"),
        (
            lambda v: save_pretrained(v, "/tmp/never-written-tpv", scores={"sst2": float("nan")}),
            "score for task 'sst2' is nan; pass numbers",
        ),
        (lambda v: save_pretrained(v, "/tmp/never-written-tpv", scores=[0.5]), "scores must map task"),
    ],
)
def test_library_calls(call, shown):
    with pytest.raises(TPVError, match=shown):
        call(_vector())


def test_save_pretrained_checks_scores_before_writing(tmp_path):
    with pytest.raises(TPVError, match="score for task 'sst2' is inf"):
        save_pretrained(_vector(), tmp_path / "out", scores={"sst2": float("inf")})
    assert not (tmp_path / "out").exists()


def test_read_card_without_readme(tmp_path):
    with pytest.raises(TPVError, match=f"'{tmp_path}' has no README.md; pass a folder written by"):
        read_card(tmp_path)


def test_make_origin_refuses_bools(make_tiny_model):
    model = make_tiny_model("llama")
    with pytest.raises(TPVError, match="num_virtual_tokens must be a positive int, got True"):
        make_origin(model, True)
    with pytest.raises(TPVError, match="seed must be an int, got False"):
        make_origin(model, 4, seed=False)


def test_evaluate_on_a_model_without_prompt_tuning(make_tiny_model, word_tokenizer):
    from tpv.engine.evaluation import evaluate

    model = make_tiny_model("llama")
    with pytest.raises(TPVError, match="expected a peft.PeftModel with a prompt-tuning adapter, got LlamaForCausalLM"):
        evaluate(model, word_tokenizer, "sst2", [{"sentence": "good", "label": 1}])


@pytest.mark.parametrize("value", [None, ["a"], {"x": 1}])
def test_a_null_or_structured_text_field_is_refused(value):
    from tpv.data import get_task

    with pytest.raises(TPVError, match=re.escape(f"task 'sst2': field 'sentence' is {value!r}, not text")):
        get_task("sst2").format({"sentence": value, "label": 1})


# ---- 13. the docs say exactly what is unpickled ----------------------------------------------------------


def test_file_format_doc_states_what_is_unpickled():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "file-format.md").read_text()
    assert "weights_only=True" in text and "adapter_model.bin" in text


# ---- the same cases at the command line: exit 2, one line ------------------------------------------------


def _bad_file(tmp_path, case) -> str:
    path = tmp_path / "bad.tpv.safetensors"
    if case == "folder":
        return str(tmp_path)
    if case == "pickle":
        path.write_bytes(pickle.dumps({"task_prompt_vector": _Payload()}))
    elif case == "tasks list":
        _rewrite(_vector().save(path), tasks='["sst2"]')
    elif case == "int tensor":
        _save_raw(path, torch.ones(4, 8, dtype=torch.int32))
    elif case == "negative tokens":
        _rewrite(_vector().save(path), num_virtual_tokens="-4", num_transformer_submodules="-1")
    elif case == "origin file":
        Origin(torch.zeros(4, 8), num_virtual_tokens=4).save(path)
    return str(path)


@pytest.mark.parametrize(
    "case, shown",
    [
        ("folder", "is a folder"),
        ("pickle", "is not a safetensors file (it is a Python pickle)"),
        ("tasks list", "is not a JSON object of task → coefficient"),
        ("int tensor", "as torch.int32, but tpv/1 files hold float32"),
        ("negative tokens", "num_virtual_tokens='-4' is not an integer ≥ 1"),
        ("origin file", "is not a task prompt vector file: it is a tpv origin file (load it with tpv.Origin.load)"),
    ],
)
@pytest.mark.parametrize("command", [["vector", "info"], ["vector", "similarity"], ["vector", "combine", "-o", "x"]])
def test_cli_bad_vector_files(command, case, shown, tmp_path, capsys):
    assert shown in _cli_error(capsys, [*command, _bad_file(tmp_path, case)])


def test_cli_train_into_a_file_or_with_a_broken_run_record(model_dir, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    train = [
        "train",
        "sst2",
        "--steps",
        "1",
        "--batch-size",
        "2",
        "--limit",
        "4",
        "--eval-limit",
        "0",
        "--virtual-tokens",
        "2",
        "--model",
        str(model_dir),
    ]
    err = _cli_error(capsys, [*train, "--output-dir", str(blocker / "run")])
    assert f"'{blocker}" in err and ("a part of the path is a file" in err or "a file is in the way" in err), err
    run = tmp_path / "run"
    assert main([*train, "--output-dir", str(run)]) == 0
    capsys.readouterr()
    (run / "tpv_train.json").write_text("[1, 2")
    err = _cli_error(capsys, [*train, "--output-dir", str(run)], status=1)
    assert "the run record" in err and "is not valid JSON" in err and "delete it to train again" in err


def test_writing_over_a_fifo_is_refused_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(TPVError, match="cannot write '.*pipe': it is not a regular file"):
        _vector().save(fifo)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode), "the FIFO must still be there"


@pytest.mark.parametrize(
    "call, shown",
    [
        (lambda v: combine(None), "combine takes a list of vectors or \\(vector, weight\\) pairs, got None"),
        (lambda v: combine(5), "combine takes a list .* got 5"),
        (lambda v: merge(None), "merge takes a list of vectors or a mapping name → vector, got None"),
        (lambda v: similarity_matrix(None), "similarity_matrix takes a mapping name → vector or a list"),
        (lambda v: v.save(None), "a file path is needed, got a NoneType"),
        (lambda v: v.save_pretrained(1), "save_pretrained needs a folder path, got 1"),
        (lambda v: TaskPromptVector.from_pretrained(None), "from_pretrained needs a folder, a vector file or a Hub"),
        (lambda v: load_split("sst2", "train", 5), "data_dir must be a folder path, got 5"),
    ],
)
def test_wrong_argument_types(call, shown):
    with pytest.raises(TPVError, match=shown):
        call(_vector())


def test_prompt_cosine_refuses_non_tensors_and_nan():
    from tpv.core.similarity import prompt_cosine

    with pytest.raises(TPVError, match="compares two tensors, got a int and a int"):
        prompt_cosine(1, 2)
    with pytest.raises(TPVError, match="holding NaN/inf values"):
        prompt_cosine(torch.full((2, 2), float("nan")), torch.ones(2, 2))


@pytest.mark.parametrize(
    "argv, shown",
    [
        (["eval", "--vector", "V", "--task", "sst2", "--batch-size", "0"], "--batch-size must be ≥ 1, got 0"),
        (["search", "V", "--batch-size", "-1"], "--batch-size must be ≥ 1, got -1"),
        (["init", "V", "-o", "V"], "is a file; pass a folder for the adapter"),
    ],
)
def test_cli_argument_checks_before_the_model_loads(argv, shown, tmp_path, capsys):
    path = str(_vector(rows=4, dim=16).save(tmp_path / "v.tpv.safetensors"))
    # No --model: a check that ran after loading would fail on the missing default model instead.
    argv = [path if a == "V" else a for a in argv] + ["--model", str(tmp_path / "no-model")]
    assert shown in _cli_error(capsys, argv)


@pytest.fixture
def peft_model(make_tiny_model):
    model = make_tiny_model("llama")
    return init_prompt_tuning(model, origin=make_origin(model, 4, seed=0))


@pytest.mark.parametrize(
    "call, shown",
    [
        (
            lambda pm, tok: __import__("tpv").set_prompt(pm, torch.ones(4, 16, dtype=torch.long)),
            "the prompt has dtype torch.int64, but soft prompts are real floating-point",
        ),
        (lambda pm, tok: __import__("tpv").set_prompt(pm, torch.ones(4, 16, dtype=torch.complex64)), "torch.complex64"),
        (
            lambda pm, tok: init_prompt_tuning(TINY_MODELS["llama"](), origin=make_origin(pm, 4), peft_config=5),
            "peft_config must be a peft.PromptTuningConfig, got 5",
        ),
        (
            lambda pm, tok: __import__("tpv.engine.evaluation").engine.evaluation.evaluate(pm, tok, "sst2", [5]),
            "task 'sst2': an example must be a dict of fields, got 5",
        ),
        (
            lambda pm, tok: __import__("tpv.engine.evaluation").engine.evaluation.evaluate(
                pm, tok, "sst2", [{"sentence": "a", "label": 0}], batch_size="x"
            ),
            "batch_size must be ≥ 1, got x",
        ),
        (
            lambda pm, tok: __import__("tpv.compose.search").compose.search.search_scale(
                _vector(rows=4, dim=16), make_origin(pm, 4), lambda p: 1.0, grid="x"
            ),
            "the λ grid must be a non-empty list of finite numbers, got 'x'",
        ),
    ],
)
def test_peft_and_engine_calls(call, shown, peft_model, word_tokenizer):
    with pytest.raises(TPVError, match=shown):
        call(peft_model, word_tokenizer)


def test_a_replaced_file_keeps_its_mode(tmp_path):
    path = _vector().save(tmp_path / "v.tpv.safetensors")
    path.chmod(0o600)
    _vector(seed=1).save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


@pytest.mark.parametrize("read", ["vector", "data", "profile"])
def test_permission_denied_on_read_is_one_tpv_error(read, tmp_path, monkeypatch):
    import pathlib

    import tpv.core._io

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "locked"))

    if read == "vector":
        path = _vector().save(tmp_path / "v.tpv.safetensors")
        monkeypatch.setattr(tpv.core._io, "safe_open", refuse)
        call = lambda: TaskPromptVector.load(path)  # noqa: E731
    elif read == "data":
        (tmp_path / "sst2").mkdir()
        (tmp_path / "sst2" / "train.jsonl").write_text("{}\n")
        monkeypatch.setattr(pathlib.Path, "read_bytes", refuse)
        call = lambda: load_split("sst2", "train", tmp_path)  # noqa: E731
    else:
        from tpv.experiments.config import load_config

        (tmp_path / "p.toml").write_text("")
        monkeypatch.setattr(pathlib.Path, "read_bytes", refuse)
        call = lambda: load_config(tmp_path / "p.toml")  # noqa: E731
    with pytest.raises(TPVError, match="cannot read '.*locked': permission denied; pick a path you may read"):
        call()


# ---- issue 26: the last faults of the hostile-input audit --------------------------------------------------


@pytest.mark.parametrize("method", ["dare_linear", "dare_ties", "ties", "magnitude_prune"])
def test_a_density_that_keeps_no_entry_is_refused(method):
    a, b = _vector(rows=40, dim=576, seed=1), _vector({"rte": 1.0}, rows=40, dim=576, seed=2)
    shown = r"density=1e-12 keeps no entry of vectors with 23040 entries .*pass density ≥ 1/23040"
    with pytest.raises(TPVError, match=shown):
        merge([a, b], method=method, density=1e-12)
    assert merge([a, b], method=method, density=1 / 23040).norm() > 0  # one entry kept on average is allowed


def test_a_merge_that_drops_every_entry_is_refused_and_a_cancelling_sum_warns():
    ones = TaskPromptVector(torch.ones(1, 4), tasks={"sst2": 1.0})
    # With seed 1, DARE's draw at density 0.25 keeps none of the 4 entries (a valid density, an empty result).
    with pytest.raises(TPVError, match="'dare_linear' with density=0.25 dropped every entry.*raise density or pass"):
        merge([ones], method="dare_linear", density=0.25, seed=1)
    with pytest.warns(UserWarning, match="'sum' returned an all-zero vector: the weighted vectors cancel"):
        cancelled = merge([ones, ones], weights=[1.0, -1.0])
    assert cancelled.norm() == 0


@pytest.mark.parametrize(
    "suffix, content, shown",
    [
        (".jsonl", b"", "is empty \\(0 bytes\\): it has no examples; write one JSON object a line"),
        (".jsonl", b"\n  \n", "holds only blank lines: it has no examples"),
        (".csv", b"", "is empty \\(0 bytes\\): it has no examples; write a header line and one example a row"),
        (".tsv", b"sentence\tlabel\n", "has a header but no rows: it has no examples"),
    ],
)
def test_a_data_file_without_examples_is_named(suffix, content, shown, tmp_path):
    from tpv import Task

    (tmp_path / "sst2").mkdir()
    path = tmp_path / "sst2" / f"train{suffix}"
    path.write_bytes(content)
    with pytest.raises(TPVError, match=f"the data file '{re.escape(str(path))}' {shown}"):
        load_split("sst2", "train", tmp_path)
    with pytest.raises(TPVError, match=f"the data file '{re.escape(str(path))}' {shown}"):
        Task.from_files(path, register=False)


_BOM = b"\xef\xbb\xbf"  # what Excel's "CSV UTF-8" and Notepad write first


@pytest.mark.parametrize(
    "suffix, content",
    [
        (".jsonl", b'{"sentence": "caf\xc3\xa9 ok", "label": 1}\n{"sentence": "bad", "label": 0}\n'),
        (".csv", b"sentence,label\ncaf\xc3\xa9 ok,1\nbad,0\n"),
        (".tsv", b"sentence\tlabel\ncaf\xc3\xa9 ok\t1\nbad\t0\n"),
    ],
)
def test_utf8_files_with_a_byte_order_mark_are_read(suffix, content, tmp_path):
    from tpv import Task

    (tmp_path / "sst2").mkdir()
    path = tmp_path / "sst2" / f"train{suffix}"
    path.write_bytes(_BOM + content)
    rows = load_split("sst2", "train", tmp_path)
    assert rows == [{"sentence": "café ok", "label": 1}, {"sentence": "bad", "label": 0}]
    task = Task.from_files({"train": path, "validation": path}, labels=["no", "yes"], name="mine", register=False)
    assert task.split("train")[0] == {"sentence": "café ok", "label": 1}
    assert task.template.startswith("sentence: {sentence}")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_moving_a_vector_to_cuda_without_one_is_one_tpv_error():
    # torch raises AssertionError("Torch not compiled with CUDA enabled") for this.
    with pytest.raises(TPVError, match="cannot move a vector to 'cuda': there is no CUDA device here .*use 'cpu'"):
        _vector().to("cuda")


def test_moving_a_vector_to_a_gpu_index_beyond_the_machine_names_the_valid_ones(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(TPVError, match=r"'cuda:5': this machine has 2 CUDA device\(s\), 'cuda:0' to 'cuda:1'"):
        _vector().to("cuda:5")


@pytest.mark.parametrize("loader", [TaskPromptVector.load, Origin.load])
def test_an_unreadable_file_is_called_unreadable_not_foreign(loader, tmp_path, monkeypatch):
    import pathlib

    import tpv.core._io

    path = _vector().save(tmp_path / "v.tpv.safetensors")

    # What safetensors raises for a mode-000 file (measured as a non-root user), and what open() raises.
    def missing(name, **kwargs):
        raise FileNotFoundError(f"No such file or directory: {name}")

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(tpv.core._io, "safe_open", missing)
    monkeypatch.setattr(pathlib.Path, "open", refuse)
    with pytest.raises(TPVError, match=f"^cannot read '{re.escape(str(path))}': permission denied; pick a path"):
        loader(path)


@pytest.mark.parametrize("deleted", ["toy.tpv.safetensors", "adapter_model.safetensors"])
def test_a_finished_run_missing_a_file_says_the_run_folder_is_incomplete(
    deleted, make_tiny_model, word_tokenizer, toy_task, tmp_path
):
    from conftest import toy_examples
    from tpv.engine.training import train_prompt

    settings = dict(output_dir=tmp_path / "run", max_steps=1, batch_size=4, num_virtual_tokens=2, progress=False)
    first = train_prompt(make_tiny_model("llama"), word_tokenizer, toy_task, toy_examples(8), origin=0, **settings)
    (tmp_path / "run" / deleted).unlink()
    shown = (
        rf"'{re.escape(str(tmp_path / 'run'))}' holds a finished run that is incomplete: '.*{re.escape(deleted)}' is "
        r"missing \(deleted after the run finished\); pass overwrite=True \(tpv train --overwrite\)"
    )
    with pytest.raises(TPVError, match=shown):
        train_prompt(make_tiny_model("llama"), word_tokenizer, toy_task, toy_examples(8), origin=0, **settings)
    again = train_prompt(
        make_tiny_model("llama"), word_tokenizer, toy_task, toy_examples(8), origin=0, overwrite=True, **settings
    )
    assert torch.equal(again.vector.tensor, first.vector.tensor)


def test_a_second_reproduce_is_told_to_use_another_run_dir(tmp_path):
    from tpv.engine.run_folder import RunLock
    from tpv.experiments import load_config, reproduce

    config = load_config("smoke")
    with RunLock(tmp_path / f"smoke-{config.fingerprint()}"):
        with pytest.raises(
            TPVError, match=r"in use by another tpv run \(.*\); wait for it to finish, or pass another --run-dir"
        ):
            reproduce(config, run_dir=tmp_path, progress=False)


def test_a_second_training_run_is_told_to_use_another_output_dir(tmp_path):
    from tpv.engine.run_folder import RunLock

    with (
        RunLock(tmp_path),
        pytest.raises(TPVError, match="or train into another output_dir \\(tpv train --output-dir\\)$"),
    ):
        RunLock(tmp_path).acquire()


def test_stale_conversions_are_removed_when_the_converted_model_is_already_cached(tmp_path, monkeypatch):
    import tpv.bridge.models as models

    monkeypatch.setenv("TPV_CACHE", str(tmp_path))
    target = tmp_path / "models" / "SmolLM2-135M-Instruct"
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    stale, fresh = (
        tmp_path / "models" / ".SmolLM2-135M-Instruct.killed",
        tmp_path / "models" / ".SmolLM2-135M-Instruct.live",
    )
    for leftover in (stale, fresh):
        leftover.mkdir()
        (leftover / "model.safetensors").write_bytes(b"x" * 100)
    old = time.time() - STALE_TEMP_SECONDS - 60
    os.utime(stale, (old, old))
    assert models.default_model_path() == target
    assert not stale.exists(), "a conversion killed an hour ago is removed even though the model is cached"
    assert fresh.exists(), "a recent temporary may belong to a conversion in progress"


@pytest.mark.parametrize("kind", ["llama", "t5"])
def test_training_and_evaluating_show_no_warning_from_transformers_or_peft(
    kind, make_tiny_model, word_tokenizer, toy_task, tmp_path
):
    import warnings

    from conftest import toy_examples
    from tpv.bridge.peft_io import load_prompt_adapter
    from tpv.engine.evaluation import evaluate
    from tpv.engine.training import train_prompt

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("error", FutureWarning)  # as `python -W error::FutureWarning`
        result = train_prompt(
            make_tiny_model(kind),
            word_tokenizer,
            toy_task,
            toy_examples(16),
            origin=0,
            eval_dataset=toy_examples(8, seed=1),
            output_dir=tmp_path / "run",
            max_steps=2,
            batch_size=4,
            num_virtual_tokens=2,
            progress=False,
        )
        loaded = load_prompt_adapter(make_tiny_model(kind), result.adapter_dir)
        for method in ("rank", "generate"):
            evaluate(loaded, word_tokenizer, toy_task, toy_examples(8, seed=2), method=method)
    from_libraries = [
        f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})"
        for w in caught
        if any(f"{os.sep}{library}{os.sep}" in w.filename for library in ("transformers", "peft"))
    ]
    assert from_libraries == []
