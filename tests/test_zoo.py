"""The vector zoo shipped in tpv/compose/zoo: every vector loads, fits the default model, and its manifest holds."""

import hashlib

import pytest
import torch

from tpv import TaskPromptVector, TPVError, zoo
from tpv.bridge.models import DEFAULT_MODEL

# SmolLM2-135M: 576-dimensional token embeddings; the zoo uses 20 virtual tokens.
DEFAULT_TOKEN_DIM = 576


def test_every_zoo_vector_loads_and_matches_the_default_models_shape():
    manifest = zoo.manifest()
    assert manifest["base_model"] == DEFAULT_MODEL
    tokens = manifest["origin"]["num_virtual_tokens"]
    rows = zoo.available()
    assert rows, "the zoo is empty"
    for row in rows:
        vector = zoo.load(row["task"])
        assert vector.shape == (tokens, DEFAULT_TOKEN_DIM)
        assert vector.tasks == {row["task"]: 1.0}
        assert vector.base_model == DEFAULT_MODEL
        assert vector.norm() == pytest.approx(row["norm"], rel=1e-5)
        data = (zoo.ZOO_DIR / row["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["file_sha256"]
        assert isinstance(vector, TaskPromptVector)  # the public class, with from_pretrained and push_to_hub
    origin = zoo.origin()
    assert origin.shape == (tokens, DEFAULT_TOKEN_DIM) and origin.recipe == manifest["origin"]["recipe"]
    assert manifest["total_bytes"] == sum((zoo.ZOO_DIR / row["file"]).stat().st_size for row in rows)


def test_the_manifest_records_how_each_vector_was_made():
    manifest = zoo.manifest()
    for key in ("commit", "dtype", "cpu", "budget_note", "at_chance_rule", "command"):
        assert manifest[key], key
    # Every planned task is either built or listed as pending, never silently missing.
    assert sorted(zoo.pending() + list(manifest["tasks"])) == sorted(manifest["planned"])
    for row in zoo.available():
        assert set(row["data_sha256"]) == {"train", "validation", "test"}
        assert 0 < row["steps"] <= row["budget"] and -1 <= row["validation"] <= 1
        assert isinstance(row["at_chance"], bool)
        # The at_chance flag follows the stated rule (scripts/learnability.py) from the recorded test.
        left = row["p_value"] < 0.01 and row["margin_over_chance"] >= 0.05
        assert row["at_chance"] == (not left)
        assert row["margin_over_chance"] == pytest.approx(row["validation"] - row["chance_level"])
        assert "0.01" in manifest["at_chance_rule"] and "0.05" in manifest["at_chance_rule"]


def test_available_prints_a_table_and_filters_at_chance_vectors():
    table = zoo.available()
    text = str(table)
    assert text.splitlines()[0].split()[:3] == ["task", "family", "steps"]
    assert all(row["task"] in text for row in table)
    kept = zoo.available(include_at_chance=False)
    assert [row["task"] for row in kept] == [row["task"] for row in table if not row["at_chance"]]
    first = table[0]["task"]
    assert first not in zoo.vectors(exclude=[first], include_at_chance=True)


def test_unknown_zoo_names_raise_one_tpverror():
    with pytest.raises(TPVError, match=r"the zoo has no vector for 'nope'; it has \["):
        zoo.load("nope")
    with pytest.raises(TPVError, match=r"cannot exclude \['nope'\]: not in the zoo"):
        zoo.vectors(exclude=["nope"])


@pytest.mark.slow
def test_manifest_scores_are_re_obtained_on_a_sample():
    """Re-score two zoo vectors on the manifest's validation examples: same data, model, dtype → same score."""
    from tpv import init_prompt_tuning
    from tpv.bridge.models import load_model
    from tpv.data import load_split
    from tpv.engine.evaluation import evaluate

    manifest = zoo.manifest()
    model, tokenizer = load_model(dtype=getattr(torch, manifest["dtype"]))
    peft_model = init_prompt_tuning(model, origin=zoo.origin())
    rows = [row for row in zoo.available() if row["task"] in ("sst2", "trec")]
    assert rows
    for row in rows:
        # The held validation examples: the ones after the checkpoint-selection set.
        start = row["selection_examples"]
        examples = load_split(row["task"], "validation")[start : start + row["validation_examples"]]
        prompt = zoo.load(row["task"]).apply_to(zoo.origin())
        score = evaluate(
            peft_model, tokenizer, row["task"], examples, prompt=prompt, max_length=row["max_length"], max_new_tokens=6
        )[row["metric"]]
        # Within noise: 2 paired-bootstrap SEs of the manifest's margin (kernels may differ across CPUs).
        assert score == pytest.approx(row["validation"], abs=max(2 * row["margin_over_origin"]["se"], 0.02))
