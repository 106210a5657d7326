"""Sharing vectors: the folder format and model card offline, the local Hub cache through the real
huggingface_hub, and the network calls against stand-ins for HfApi and snapshot_download."""

from pathlib import Path

import pytest
import torch
from huggingface_hub import CommitInfo

from tpv import TaskPromptVector, TPVError
from tpv.bridge.hub import CARD_FILENAME, VECTOR_FILENAME, model_card, read_card, save_pretrained
from tpv.core.errors import TPVFileNotFoundError, TPVRepoNotFoundError


@pytest.fixture
def vector():
    torch.manual_seed(0)
    return TaskPromptVector(
        torch.randn(4, 8),
        tasks={"sst2": 1.0, "yelp_polarity": 0.5},
        num_virtual_tokens=4,
        base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
        task_type="CAUSAL_LM",
        origin="sample_vocab(seed=0)",
    )


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
    for text in (
        "| sst2 | 1 |",
        "| yelp_polarity | 0.5 |",
        "- tensor: 4 × 8",
        "- num_virtual_tokens: 4",
        "`sample_vocab(seed=0)`",
        "| sst2 | macro_f1 | 0.91 |",
        "| yelp_polarity | score | 0.88 |",
        "TaskPromptVector.from_pretrained",
    ):
        assert text in card, text


def test_card_is_a_huggingface_model_card_with_valid_yaml(vector, tmp_path):
    import yaml
    from huggingface_hub import ModelCard

    card = model_card(vector)
    assert isinstance(card, ModelCard) and card.data.library_name == "tpv"
    meta = yaml.safe_load(str(card).split("---\n")[1])
    assert meta["library_name"] == "tpv" and "sst2" in meta["tags"]
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    # The Hub's own reader sees the same metadata in the saved README.md.
    folder = vector.save_pretrained(tmp_path / "shared")
    assert ModelCard.load(folder / CARD_FILENAME).data.to_dict() == meta == read_card(folder)
    assert "https://github.com/" not in str(card)  # no placeholder link


def test_card_without_base_model_or_scores_omits_them():
    card = str(model_card(TaskPromptVector(torch.ones(1, 2), tasks={"rte": 1.0})))
    assert "base_model" not in card and "## Scores" not in card and "unknown" in card


def test_read_card_refuses_broken_front_matter(tmp_path):
    (tmp_path / CARD_FILENAME).write_text("---\ntags: [unclosed\n---\n\n# card\n")
    with pytest.raises(TPVError, match="broken YAML front matter"):
        read_card(tmp_path)


def _hub_cache(cache_dir, repo_id, folder, commit="0123456789abcdef0123456789abcdef01234567"):
    # The layout huggingface_hub's own cache uses: models--owner--name/{refs/main, snapshots/<commit>/...}.
    repo = cache_dir / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for path in Path(folder).iterdir():
        (snapshot / path.name).write_bytes(path.read_bytes())
    return commit


def test_from_pretrained_reads_the_hub_cache_offline(vector, tmp_path):
    commit = _hub_cache(tmp_path / "cache", "me/sst2-tpv", vector.save_pretrained(tmp_path / "shared"))
    for revision in (None, "main", commit):
        loaded = TaskPromptVector.from_pretrained(
            "me/sst2-tpv", cache_dir=tmp_path / "cache", local_files_only=True, revision=revision
        )
        assert torch.equal(loaded.tensor, vector.tensor) and loaded.tasks == vector.tasks


def test_local_files_only_on_a_repo_not_in_the_cache_is_one_tpv_error(tmp_path):
    with pytest.raises(
        TPVError,
        match=r"cannot get the vector 'me/missing' in the local Hub cache \(.*\); "
        r"check the repo id, download it once without local_files_only",
    ) as caught:
        TaskPromptVector.from_pretrained("me/missing", cache_dir=tmp_path, local_files_only=True)
    assert "\n" not in str(caught.value)
    # What transformers and huggingface_hub users already catch.
    assert isinstance(caught.value, FileNotFoundError) and isinstance(caught.value, TPVRepoNotFoundError)


def test_a_revision_the_cache_does_not_hold_is_a_repo_not_found_error(vector, tmp_path):
    _hub_cache(tmp_path / "cache", "me/sst2-tpv", vector.save_pretrained(tmp_path / "shared"))
    with pytest.raises(TPVRepoNotFoundError, match="cannot get the vector 'me/sst2-tpv' at revision 'v9'"):
        TaskPromptVector.from_pretrained("me/sst2-tpv", cache_dir=tmp_path / "cache", revision="v9")


def test_a_local_folder_wins_over_a_hub_id_of_the_same_spelling(vector, tmp_path, monkeypatch, stand_in_hub):
    monkeypatch.chdir(tmp_path)
    vector.save_pretrained(tmp_path / "me" / "sst2-tpv")
    assert TaskPromptVector.from_pretrained("me/sst2-tpv").tasks == vector.tasks
    assert not [call for call in stand_in_hub if call[0] == "snapshot_download"]


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
    with pytest.raises(TPVFileNotFoundError, match="neither an existing folder"):
        TaskPromptVector.from_pretrained("./no/such/folder")
    with pytest.raises(TPVError, match="bad Hub repo id"):
        vector.push_to_hub("not a repo id")
    with pytest.raises(TPVError, match="scores must|pass numbers"):
        save_pretrained(vector, tmp_path / "x", scores={"sst2": "high"})
    (tmp_path / "file").write_text("")
    with pytest.raises(TPVError, match="is a file"):
        save_pretrained(vector, tmp_path / "file")


def test_push_to_hub_and_from_pretrained_through_huggingface_hub(vector, stand_in_hub, tmp_path):
    from tpv import __version__

    commit = vector.push_to_hub("me/sst2-yelp-tpv", scores={"sst2": 0.9}, private=True, token="hf_x")
    assert isinstance(commit, CommitInfo) and commit.repo_url.repo_id == "me/sst2-yelp-tpv"
    assert commit.oid == "f" * 40 and commit.pr_url is None
    assert stand_in_hub[:3] == [
        ("HfApi", "hf_x", "tpv"),
        ("create_repo", "me/sst2-yelp-tpv", "model", True, True),
        (
            "upload_folder",
            "me/sst2-yelp-tpv",
            "model",
            [CARD_FILENAME, VECTOR_FILENAME],
            "Upload task prompt vector 1·sst2 + 0.5·yelp_polarity",
            ["*.tpv.safetensors", CARD_FILENAME],
        ),
    ]
    loaded = TaskPromptVector.from_pretrained(
        "me/sst2-yelp-tpv", revision="v1", token="hf_y", cache_dir=tmp_path / "c", force_download=True
    )
    assert torch.equal(loaded.tensor, vector.tensor) and loaded.tasks == vector.tasks
    assert stand_in_hub[-1] == (
        "snapshot_download",
        "me/sst2-yelp-tpv",
        {
            "revision": "v1",
            "token": "hf_y",
            "cache_dir": tmp_path / "c",
            "local_files_only": False,
            "force_download": True,
            "allow_patterns": ["*.tpv.safetensors", CARD_FILENAME],
            "library_name": "tpv",
            "library_version": __version__,
        },
    )


def test_save_pretrained_pushes_like_transformers(vector, stand_in_hub, tmp_path):
    folder = vector.save_pretrained(tmp_path / "sst2-tpv", push_to_hub=True, token="hf_x")
    assert (folder / VECTOR_FILENAME).is_file()
    assert stand_in_hub[1] == (
        "create_repo",
        "sst2-tpv",
        "model",
        False,
        True,
    )  # the folder's name, as transformers does
    vector.save_pretrained(tmp_path / "other", push_to_hub=True, repo_id="me/named", private=True)
    assert stand_in_hub[-3] == ("create_repo", "me/named", "model", True, True)
    with pytest.raises(TPVError, match="bad Hub repo id 'a b'"):
        vector.save_pretrained(tmp_path / "a b", push_to_hub=True)
    assert not (tmp_path / "a b").exists()  # refused before anything was written


def test_push_to_a_branch_or_as_a_pull_request(vector, stand_in_hub):
    vector.push_to_hub("me/tpv", revision="v2")
    assert ("create_branch", "me/tpv", "v2", "model", True) in stand_in_hub
    assert stand_in_hub[-1] == ("upload_target", "v2", False)
    commit = vector.push_to_hub("me/tpv", create_pr=True)
    assert stand_in_hub[-1] == ("upload_target", None, True) and commit.pr_url.endswith("/discussions/1")


def test_positional_scores_still_work_with_a_deprecation_warning(vector, stand_in_hub, tmp_path):
    with pytest.warns(DeprecationWarning, match=r"push_to_hub\(repo_id, scores=\.\.\., private=\.\.\.\)"):
        vector.push_to_hub("me/tpv", {"sst2": 0.75}, True)
    assert ("create_repo", "me/tpv", "model", True, True) in stand_in_hub
    card = (tmp_path / "remote" / "me" / "tpv" / CARD_FILENAME).read_text()  # where the stand-in keeps uploads
    assert "| sst2 | score | 0.75 |" in card
    with pytest.raises(TPVError, match="takes repo_id and keyword arguments, got 6 positional"):
        vector.push_to_hub("me/tpv", {}, False, None, "msg", "extra")


def test_scores_go_into_the_model_index_the_hub_reads(vector, tmp_path):
    from huggingface_hub import ModelCard

    folder = vector.save_pretrained(tmp_path / "shared", scores={"sst2": {"macro_f1": 0.91}, "yelp_polarity": 0.88})
    results = ModelCard.load(folder / CARD_FILENAME).data.eval_results
    assert [(r.dataset_name, r.metric_type, r.metric_value, r.task_type) for r in results] == [
        ("sst2", "macro_f1", 0.91, "text-generation"),
        ("yelp_polarity", "score", 0.88, "text-generation"),
    ]
    assert ModelCard.load(vector.save_pretrained(tmp_path / "plain") / CARD_FILENAME).data.eval_results is None


def test_download_failures_are_one_tpv_error(stand_in_hub):
    with pytest.raises(
        TPVError,
        match="cannot get the vector 'me/missing' from the Hugging Face Hub.*Repository "
        "Not Found.*pass token= for a private repository",
    ):
        TaskPromptVector.from_pretrained("me/missing")


def test_load_sources_and_auto_init_sources_take_a_hub_repo_id_from_the_cache(vector, tmp_path, monkeypatch):
    from tpv.compose.auto_init import load_sources

    shared = tmp_path / "zoo-folder"
    vector.save(shared / "sst2.tpv.safetensors")
    TaskPromptVector(torch.ones(4, 8), tasks={"rte": 1.0}).save(shared / "rte.tpv.safetensors")
    commit = _hub_cache(tmp_path / "cache", "me/zoo", shared)
    loaded = load_sources("me/zoo", cache_dir=tmp_path / "cache", revision=commit, exclude=["rte"])
    assert list(loaded) == ["sst2"] and torch.equal(loaded["sst2"].tensor, vector.tensor)
    # With the default cache (HF_HUB_CACHE), as auto_init(sources="me/zoo") calls it.
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "cache"))
    assert sorted(load_sources("me/zoo")) == ["rte", "sst2"]
    # In a list, a repo is one source: here a vector shared with push_to_hub's layout.
    rte = TaskPromptVector(torch.ones(4, 8), tasks={"rte": 1.0})
    _hub_cache(tmp_path / "cache", "me/rte-tpv", rte.save_pretrained(tmp_path / "shared"))
    assert list(load_sources(["me/rte-tpv"])) == ["rte"]
    with pytest.raises(TPVRepoNotFoundError, match="cannot get the sources 'me/other' in the local Hub cache"):
        load_sources("me/other")
    with pytest.raises(TPVFileNotFoundError, match="no such source file or folder: 'no/such/dir/x'"):
        load_sources(["no/such/dir/x"])


def test_auto_init_passes_hub_options_to_its_sources(vector, tmp_path, make_tiny_model, word_tokenizer, toy_task):
    from conftest import toy_examples
    from tpv import auto_init

    model = make_tiny_model("llama")
    shared = tmp_path / "zoo-folder"
    vector.save(shared / "sst2.tpv.safetensors")
    commit = _hub_cache(tmp_path / "cache", "me/zoo", shared)
    options = {"validation": toy_examples(16), "progress": False}
    with pytest.raises(TPVRepoNotFoundError, match="cannot get the sources 'me/zoo'"):
        auto_init(model, word_tokenizer, toy_task, "me/zoo", local_files_only=True, **options)
    # With the cache and the revision passed, the repo is found; its 4×8 vector then does not fit this model.
    with pytest.raises(TPVError, match="sst2") as caught:
        auto_init(model, word_tokenizer, toy_task, "me/zoo", cache_dir=tmp_path / "cache", revision=commit, **options)
    assert not isinstance(caught.value, TPVRepoNotFoundError)


def test_missing_files_are_file_not_found_errors(tmp_path):
    from tpv import Origin
    from tpv.core.errors import TPVOSError, os_errors

    with pytest.raises(FileNotFoundError, match="no such file: .*missing.origin.safetensors"):
        Origin.load(tmp_path / "missing.origin.safetensors")
    with pytest.raises(TPVFileNotFoundError, match="cannot read .*: no such file or folder"):
        with os_errors(tmp_path / "x", "read"):
            (tmp_path / "x").read_text()
    (tmp_path / "file").write_text("")
    with pytest.raises(TPVOSError, match="a part of the path is a file") as caught:
        with os_errors(tmp_path / "file" / "x", "write"):
            (tmp_path / "file" / "x").write_text("")
    assert isinstance(caught.value, OSError) and not isinstance(caught.value, FileNotFoundError)
    from tpv import load_model
    from tpv.compose.zoo import read_manifest

    with pytest.raises(FileNotFoundError, match="no model folder at '.*no-model'"):
        load_model(str(tmp_path / "no-model"))
    with pytest.raises(FileNotFoundError, match="holds no zoo manifest"):
        read_manifest(tmp_path)
    with pytest.raises(TPVOSError, match="cannot load model 'me/no-such-model'") as caught:
        load_model("me/no-such-model")  # HF_HUB_OFFLINE: transformers raises OSError, so does tpv
    assert isinstance(caught.value, TPVError)
