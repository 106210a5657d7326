"""Sharing vectors: the folder format and model card offline, the Hub calls against a fake huggingface_hub."""

import sys
import types
from pathlib import Path

import pytest
import torch

from tpv import TaskPromptVector, TPVError
from tpv.bridge.hub import CARD_FILENAME, VECTOR_FILENAME, model_card, read_card, save_pretrained


@pytest.fixture
def vector():
    torch.manual_seed(0)
    return TaskPromptVector(torch.randn(4, 8), tasks={"sst2": 1.0, "yelp_polarity": 0.5}, num_virtual_tokens=4,
                            base_model="HuggingFaceTB/SmolLM2-135M-Instruct", task_type="CAUSAL_LM",
                            origin="sample_vocab(seed=0)")


def test_folder_round_trip_and_card(vector, tmp_path):
    folder = vector.save_pretrained(tmp_path / "shared", scores={"sst2": {"macro_f1": 0.91}, "yelp_polarity": 0.88})
    assert sorted(p.name for p in folder.iterdir()) == [CARD_FILENAME, VECTOR_FILENAME]
    loaded = TaskPromptVector.from_pretrained(folder)
    assert torch.equal(loaded.tensor, vector.tensor) and loaded.tasks == vector.tasks
    assert loaded.origin == vector.origin and loaded.base_model == vector.base_model

    meta = read_card(folder)
    assert meta["library_name"] == "tpv" and meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert {"tpv", "task-prompt-vector", "prompt-tuning", "peft", "sst2", "yelp_polarity"} <= set(meta["tags"])
    card = (folder / CARD_FILENAME).read_text()
    for text in ("| sst2 | 1 |", "| yelp_polarity | 0.5 |", "- tensor: 4 × 8", "- num_virtual_tokens: 4",
                 "`sample_vocab(seed=0)`", "| sst2 | macro_f1 | 0.91 |", "| yelp_polarity | score | 0.88 |",
                 "TaskPromptVector.from_pretrained"):
        assert text in card, text


def test_front_matter_is_valid_yaml(vector):
    yaml = pytest.importorskip("yaml")
    card = model_card(vector)
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["library_name"] == "tpv" and "sst2" in meta["tags"]


def test_card_without_base_model_or_scores_omits_them():
    card = model_card(TaskPromptVector(torch.ones(1, 2), tasks={"rte": 1.0}))
    assert "base_model" not in card and "## Scores" not in card and "unknown" in card


def test_from_pretrained_reads_a_vector_file_and_a_folder_with_one_vector(vector, tmp_path):
    path = vector.save(tmp_path / "other.tpv.safetensors")
    assert TaskPromptVector.from_pretrained(path).tasks == vector.tasks
    assert TaskPromptVector.from_pretrained(tmp_path).tasks == vector.tasks  # the one *.tpv.safetensors in the folder


def test_errors(vector, tmp_path):
    with pytest.raises(TPVError, match="holds no \\*.tpv.safetensors"):
        TaskPromptVector.from_pretrained(tmp_path)
    vector.save(tmp_path / "a.tpv.safetensors")
    vector.save(tmp_path / "b.tpv.safetensors")
    with pytest.raises(TPVError, match="holds 2 vector files"):
        TaskPromptVector.from_pretrained(tmp_path)
    with pytest.raises(TPVError, match="neither an existing folder"):
        TaskPromptVector.from_pretrained("./no/such/folder")
    with pytest.raises(TPVError, match="bad Hub repo id"):
        vector.push_to_hub("not a repo id")
    with pytest.raises(TPVError, match="scores must|pass numbers"):
        save_pretrained(vector, tmp_path / "x", scores={"sst2": "high"})
    (tmp_path / "file").write_text("")
    with pytest.raises(TPVError, match="is a file"):
        save_pretrained(vector, tmp_path / "file")


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """A stand-in for huggingface_hub that records calls and serves uploads back from a local 'remote'."""
    calls = []
    remote = tmp_path / "remote"

    class HfApi:
        def __init__(self, token=None):
            calls.append(("HfApi", token))

        def create_repo(self, repo_id, repo_type=None, private=False, exist_ok=False):
            calls.append(("create_repo", repo_id, repo_type, private, exist_ok))
            return types.SimpleNamespace(url=f"https://huggingface.co/{repo_id}")

        def upload_folder(self, repo_id, folder_path, repo_type=None, commit_message=None):
            names = sorted(p.name for p in Path(folder_path).iterdir())
            calls.append(("upload_folder", repo_id, repo_type, names, commit_message))
            target = remote / repo_id
            target.mkdir(parents=True, exist_ok=True)
            for path in Path(folder_path).iterdir():
                (target / path.name).write_bytes(path.read_bytes())

    def snapshot_download(repo_id, revision=None, token=None, allow_patterns=None):
        calls.append(("snapshot_download", repo_id, revision, token, allow_patterns))
        if not (remote / repo_id).is_dir():
            raise OSError(f"404 Client Error: Repository Not Found for url: https://huggingface.co/{repo_id}")
        return str(remote / repo_id)

    module = types.ModuleType("huggingface_hub")
    module.HfApi, module.snapshot_download = HfApi, snapshot_download
    monkeypatch.setitem(sys.modules, "huggingface_hub", module)
    return calls


def test_push_to_hub_and_from_pretrained_through_huggingface_hub(vector, fake_hub):
    url = vector.push_to_hub("me/sst2-yelp-tpv", scores={"sst2": 0.9}, private=True, token="hf_x")
    assert url == "https://huggingface.co/me/sst2-yelp-tpv"
    assert fake_hub[:3] == [
        ("HfApi", "hf_x"),
        ("create_repo", "me/sst2-yelp-tpv", "model", True, True),
        ("upload_folder", "me/sst2-yelp-tpv", "model", [CARD_FILENAME, VECTOR_FILENAME],
         "Upload task prompt vector 1·sst2 + 0.5·yelp_polarity"),
    ]
    loaded = TaskPromptVector.from_pretrained("me/sst2-yelp-tpv", revision="main")
    assert torch.equal(loaded.tensor, vector.tensor) and loaded.tasks == vector.tasks
    assert fake_hub[-1] == ("snapshot_download", "me/sst2-yelp-tpv", "main", None,
                            ["*.tpv.safetensors", CARD_FILENAME])


def test_download_failures_are_one_tpv_error(fake_hub):
    with pytest.raises(TPVError, match="cannot download the vector 'me/missing'.*Repository Not Found"):
        TaskPromptVector.from_pretrained("me/missing")


def test_missing_huggingface_hub_says_how_to_install(vector, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(TPVError, match=r"pip install 'tpv\[hub\]'"):
        vector.push_to_hub("me/x")
