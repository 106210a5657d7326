"""Fuzzing every loader (issue 10): random bytes, random safetensors headers and metadata, random adapter configs,
data files and profiles. The only acceptable outcomes are a correct load or one TPVError."""

import json
import math
import shutil
import struct
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tpv import Origin, TaskPromptVector, TPVError, init_prompt_tuning, make_origin
from tpv.data import load_split
from tpv.experiments.config import ExperimentConfig, load_config

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

DTYPES = ["F32", "F64", "F16", "BF16", "I64", "I32", "I8", "U8", "BOOL", "C64", "F8_E4M3", "X"]
META_KEYS = [
    "format",
    "tasks",
    "num_virtual_tokens",
    "num_transformer_submodules",
    "token_dim",
    "base_model",
    "task_type",
    "origin",
    "merge",
    "seed",
    "method",
    "option.std",
    "tpv_version",
]
FORMATS = ["tpv/1", "tpv-origin/1", "", "tpv/2"]
TENSOR_NAMES = ["task_prompt_vector", "origin", "prompt_embeddings", "other"]

small_text = st.text(max_size=12)
number_text = st.one_of(st.integers(-5, 40).map(str), st.floats(allow_nan=True).map(repr), small_text)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10, 10), st.floats(), small_text),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(small_text, inner, max_size=3)),
    max_leaves=6,
)
metadata_value = st.one_of(number_text, json_values.map(json.dumps), st.sampled_from(FORMATS))


@st.composite
def safetensors_bytes(draw) -> bytes:
    """A file whose header is random but well-formed enough to reach the checks beyond safetensors' own."""
    metadata = draw(st.dictionaries(st.sampled_from(META_KEYS), metadata_value, max_size=8))
    header: dict = {"__metadata__": metadata} if draw(st.booleans()) else {}
    data = b""
    for name in draw(st.lists(st.sampled_from(TENSOR_NAMES), max_size=2, unique=True)):
        dtype = draw(st.sampled_from(DTYPES))
        shape = draw(st.lists(st.integers(0, 6), max_size=3))
        size = draw(st.integers(0, 200))
        if draw(st.booleans()):  # a consistent entry most of the time, so the tensor itself is read
            width = {"F64": 8, "I64": 8, "C64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2}.get(dtype, 1)
            size = width * math.prod(shape)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + size]}
        data += draw(st.binary(min_size=size, max_size=size)) if size < 64 else bytes(size)
    encoded = json.dumps(header).encode()
    if draw(st.booleans()):
        encoded += b" " * (-len(encoded) % 8)
    length = len(encoded) if draw(st.integers(0, 9)) else draw(st.integers(0, 2**64 - 1))
    return struct.pack("<Q", length) + encoded + data


@st.composite
def mutated_tpv_file(draw) -> bytes:
    """A real vector or origin file, saved by tpv, with some metadata and the tensor replaced."""
    from safetensors.torch import save

    kind = draw(st.sampled_from(["vector", "origin"]))
    rows, dim = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    tensor = torch.randn(rows, dim)
    if kind == "vector":
        key = "task_prompt_vector"
        metadata = {
            "format": "tpv/1",
            "tasks": '{"a":1.0}',
            "num_virtual_tokens": str(rows),
            "num_transformer_submodules": "1",
            "token_dim": str(dim),
            "base_model": "",
            "task_type": "",
            "origin": "",
        }
    else:
        key = "origin"
        metadata = {
            "format": "tpv-origin/1",
            "method": "normal",
            "seed": "0",
            "base_model": "",
            "num_virtual_tokens": str(rows),
            "num_transformer_submodules": "1",
            "token_dim": str(dim),
        }
    metadata.update(draw(st.dictionaries(st.sampled_from(META_KEYS), metadata_value, max_size=3)))
    for name in draw(st.lists(st.sampled_from(list(metadata)), max_size=2)):
        metadata.pop(name, None)
    if draw(st.booleans()):
        dtype = draw(st.sampled_from([torch.float64, torch.float16, torch.int32, torch.bool, torch.complex64]))
        tensor = tensor.to(dtype) if dtype != torch.bool else tensor > 0
    if draw(st.booleans()):
        tensor = tensor.reshape(draw(st.sampled_from([(rows * dim,), (1, rows, dim), (rows * dim, 1)])))
    if draw(st.booleans()):
        tensor = tensor.flatten()[:0].reshape(0, dim) if tensor.is_floating_point() else tensor
    if draw(st.integers(0, 4)) == 0 and tensor.is_floating_point() and tensor.numel():
        tensor = tensor.clone()
        big = [1e300] if tensor.dtype == torch.float64 else []
        tensor.view(-1)[0] = draw(st.sampled_from([float("nan"), float("inf"), *big]))
    return save({key: tensor}, metadata=metadata)


any_file = st.one_of(st.binary(max_size=300), safetensors_bytes(), mutated_tpv_file())


def _accepts_only_a_load_or_tpv_error(load, path):
    try:
        result = load(path)
    except TPVError as error:
        assert str(error).strip(), "a TPVError must say something"
        return None
    return result


@FUZZ
@given(content=any_file)
def test_vector_load(content):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.tpv.safetensors"
        path.write_bytes(content)
        vector = _accepts_only_a_load_or_tpv_error(TaskPromptVector.load, path)
        if vector is not None:
            assert vector.tensor.dtype == torch.float32 and torch.isfinite(vector.tensor).all()
            assert (
                vector.tensor.numel() > 0
                and vector.shape[0] == vector.num_virtual_tokens * vector.num_transformer_submodules
            )
            assert all(math.isfinite(c) for c in vector.tasks.values())
            assert TaskPromptVector.load(vector.save(Path(folder) / "again.tpv.safetensors")).tasks == vector.tasks


@FUZZ
@given(content=any_file)
def test_origin_load(content):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.origin.safetensors"
        path.write_bytes(content)
        origin = _accepts_only_a_load_or_tpv_error(Origin.load, path)
        if origin is not None:
            assert origin.tensor.dtype == torch.float32 and torch.isfinite(origin.tensor).all()
            assert origin.shape[0] == origin.num_virtual_tokens * origin.num_transformer_submodules >= 1


@pytest.fixture(scope="module")
def adapter_template(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=64,
            hidden_size=8,
            intermediate_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
        )
    )
    folder = tmp_path_factory.mktemp("adapter")
    init_prompt_tuning(model, origin=make_origin(model, 2, seed=0)).save_pretrained(folder)
    return folder


adapter_config = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(
        st.sampled_from(
            [
                "peft_type",
                "num_virtual_tokens",
                "num_transformer_submodules",
                "token_dim",
                "task_type",
                "base_model_name_or_path",
            ]
        ),
        json_values,
        max_size=6,
    ).map(lambda d: json.dumps({"peft_type": "PROMPT_TUNING", **d}).encode()),
)


@FUZZ
@given(
    which=st.sampled_from(
        ["adapter_config.json", "adapter_model.safetensors", "tpv_origin.safetensors", "adapter_model.bin"]
    ),
    config=adapter_config,
    content=any_file,
)
def test_from_peft(adapter_template, which, config, content):
    with tempfile.TemporaryDirectory() as folder:
        adapter = Path(folder) / "adapter"
        shutil.copytree(adapter_template, adapter)
        if which == "adapter_config.json":
            (adapter / which).write_bytes(config)
        elif which == "adapter_model.bin":
            (adapter / "adapter_model.safetensors").unlink()
            (adapter / which).write_bytes(content)
        else:
            (adapter / which).write_bytes(content)
        vector = _accepts_only_a_load_or_tpv_error(TaskPromptVector.from_peft, adapter)
        if vector is not None:
            assert vector.shape == (2, 8) and torch.isfinite(vector.tensor).all()


field_values = st.one_of(json_values, small_text)


@FUZZ
@given(
    suffix=st.sampled_from([".jsonl", ".csv", ".tsv"]),
    content=st.one_of(
        st.binary(max_size=300),
        st.lists(
            st.dictionaries(st.sampled_from(["sentence", "label", "idx"]), field_values, max_size=3), max_size=4
        ).map(lambda rows: "\n".join(json.dumps(r) for r in rows).encode()),
        st.lists(st.lists(small_text, max_size=3), max_size=4).map(
            lambda rows: "\n".join(["sentence,label", *(",".join(r) for r in rows)]).encode()
        ),
    ),
)
def test_load_split(suffix, content):
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "sst2").mkdir()
        (Path(folder) / "sst2" / f"train{suffix}").write_bytes(content)
        examples = _accepts_only_a_load_or_tpv_error(lambda d: load_split("sst2", "train", d), folder)
        if examples is not None:
            # Numbers are text enough (a JSON 0 formats as "0"); nulls, bools, lists and dicts are refused.
            assert all(type(e["sentence"]) in (str, int, float) and e["label"] in (0, 1) for e in examples)


def _toml(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(t for t in map(_toml, value) if t is not None) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {t}" for k, v in value.items() if (t := _toml(v)) is not None) + "}"


def _profile_text(table: dict) -> str:
    lines, sections = [], []
    for key, value in table.items():
        if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
            sections.append((key, value))
        elif (text := _toml(value)) is not None:
            lines.append(f"{json.dumps(key)} = {text}")
    for name, section in sections:
        lines.append(f"[{json.dumps(name)}]")
        lines += [f"{json.dumps(k)} = {t}" for k, v in section.items() if (t := _toml(v)) is not None]
    return "\n".join(lines) + "\n"


SMOKE = load_config("smoke").to_dict()


@st.composite
def mutated_profile(draw) -> str:
    table = json.loads(json.dumps(SMOKE))
    for _ in range(draw(st.integers(1, 3))):
        section = draw(st.sampled_from(sorted(table)))
        if isinstance(table[section], dict) and draw(st.booleans()):
            keys = sorted(table[section]) + ["unknown_key"]
            table[section][draw(st.sampled_from(keys))] = draw(field_values)
        else:
            table[section] = draw(field_values)
    return _profile_text(table)


@FUZZ
@given(content=st.one_of(st.binary(max_size=200), mutated_profile().map(str.encode)))
def test_profiles(content):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "p.toml"
        path.write_bytes(content)
        config = _accepts_only_a_load_or_tpv_error(load_config, path)
        if config is not None:
            assert isinstance(config, ExperimentConfig)


def test_the_profile_writer_round_trips_the_smoke_profile(tmp_path):
    path = tmp_path / "smoke.toml"
    path.write_text(_profile_text(SMOKE))
    assert load_config(path).to_dict() == load_config("smoke").to_dict()
