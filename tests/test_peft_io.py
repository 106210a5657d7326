"""The PEFT bridge: exact initialisation, a real training round trip, adapters on disk and in memory."""

import shutil

import pytest
import torch
from peft import LoraConfig, PeftModel, PrefixTuningConfig, get_peft_model

from tpv import Origin, TaskPromptVector, TPVError, get_prompt, init_prompt_tuning, make_origin, set_prompt
from tpv.bridge.peft_io import origin_from_peft_config
from tpv.core.errors import TPVRepoNotFoundError


def _vector_for(origin: Origin, seed: int, task: str) -> TaskPromptVector:
    tensor = torch.randn(origin.shape, generator=torch.Generator().manual_seed(seed))
    tensor[origin.num_virtual_tokens :] = 0  # rows PEFT never prepends cannot move
    return TaskPromptVector(
        tensor,
        tasks={task: 1.0},
        num_virtual_tokens=origin.num_virtual_tokens,
        num_transformer_submodules=origin.num_transformer_submodules,
    )


@pytest.mark.parametrize("scale", [0.0, 0.3, 1.0, 2.5])
def test_init_prompt_tuning_is_exactly_origin_plus_scaled_vector(tiny_model, scale):
    origin = make_origin(tiny_model, 4, seed=1)
    vector = _vector_for(origin, 0, "a")
    peft_model = init_prompt_tuning(tiny_model, vector, origin=origin, scale=scale)
    assert torch.equal(get_prompt(peft_model), origin.tensor + scale * vector.tensor)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable == ["prompt_encoder.default.embedding.weight"]


def test_list_of_vectors_and_weighted_pairs(make_tiny_model):
    model = make_tiny_model("llama")
    origin = make_origin(model, 3, seed=0)
    a, b = _vector_for(origin, 1, "a"), _vector_for(origin, 2, "b")
    peft_model = init_prompt_tuning(model, [(a, 0.5), b], origin=origin, scale=0.8)
    torch.testing.assert_close(get_prompt(peft_model), origin.tensor + 0.8 * (0.5 * a.tensor + b.tensor))


def _toy_batch(model):
    if model.config.is_encoder_decoder:
        return {"input_ids": torch.tensor([[5, 6, 7, 1], [8, 9, 10, 1]]), "labels": torch.tensor([[11, 1], [12, 1]])}
    ids = torch.tensor([[5, 6, 7, 11], [8, 9, 10, 12]])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}


def test_real_round_trip_train_save_reload_apply(tiny_model, tmp_path):
    origin = make_origin(tiny_model, 4, seed=0)
    peft_model = init_prompt_tuning(tiny_model, origin=origin)
    frozen_before = {n: p.clone() for n, p in peft_model.base_model.named_parameters()}
    optimizer = torch.optim.Adam([p for p in peft_model.parameters() if p.requires_grad], lr=0.1)
    batch = _toy_batch(tiny_model)
    losses = []
    for _ in range(5):
        loss = peft_model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    for name, param in peft_model.base_model.named_parameters():
        if "prompt_encoder" not in name:
            assert torch.equal(param, frozen_before[name]), name
    peft_model.save_pretrained(tmp_path / "sst2")
    assert (tmp_path / "sst2" / "tpv_origin.safetensors").is_file()

    from_folder = TaskPromptVector.from_peft(tmp_path / "sst2")
    from_memory = TaskPromptVector.from_peft(peft_model, task="sst2")
    assert from_folder.tasks == {"sst2": 1.0} and from_memory.tasks == {"sst2": 1.0}
    torch.testing.assert_close(from_folder.tensor, get_prompt(peft_model) - origin.tensor)
    assert torch.equal(from_folder.tensor, from_memory.tensor)
    assert from_folder.origin == "sample_vocab(seed=0)" and from_folder.norm() > 0
    if origin.num_transformer_submodules == 2:
        assert torch.count_nonzero(from_folder.tensor[4:]) == 0  # the decoder block never trains

    # Apply to a different origin, start a new adapter there, save it, and let PEFT itself load it back.
    new_origin = make_origin(tiny_model, 4, seed=7)
    expected = from_folder.apply_to(new_origin, scale=0.8)
    fresh_base = type(tiny_model)(tiny_model.config)
    target = init_prompt_tuning(fresh_base, from_folder, origin=new_origin, scale=0.8)
    target.save_pretrained(tmp_path / "target")
    reloaded = PeftModel.from_pretrained(type(tiny_model)(tiny_model.config), tmp_path / "target")
    assert torch.equal(get_prompt(reloaded), expected)
    again = TaskPromptVector.from_peft(tmp_path / "target")
    torch.testing.assert_close(again.tensor, 0.8 * from_folder.tensor, rtol=0, atol=1e-6)


def test_set_prompt_keeps_the_optimizer_working(make_tiny_model):
    model = make_tiny_model("llama")
    peft_model = init_prompt_tuning(model, origin=make_origin(model, 2, seed=0))
    parameter = peft_model.prompt_encoder["default"].embedding.weight
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    set_prompt(peft_model, torch.zeros(2, 16))
    assert peft_model.prompt_encoder["default"].embedding.weight is parameter
    peft_model(**_toy_batch(model)).loss.backward()
    optimizer.step()
    assert torch.count_nonzero(get_prompt(peft_model)) > 0


def test_non_default_adapter_name_round_trip(make_tiny_model, tmp_path):
    model = make_tiny_model("gpt2")
    origin = make_origin(model, 3, seed=2)
    peft_model = init_prompt_tuning(model, origin=origin, adapter_name="sst2")
    set_prompt(peft_model, origin.tensor + 1.0, adapter_name="sst2")
    peft_model.save_pretrained(tmp_path / "run")
    assert (tmp_path / "run" / "sst2" / "tpv_origin.safetensors").is_file()
    vector = TaskPromptVector.from_peft(tmp_path / "run", adapter_name="sst2")
    torch.testing.assert_close(vector.tensor, torch.ones(3, 16))


def test_from_peft_errors(make_tiny_model, tmp_path):
    model = make_tiny_model("llama")
    origin = make_origin(model, 2, seed=0)
    # A folder saved by plain PEFT has no origin beside it.
    from peft import PromptTuningConfig

    plain = get_peft_model(make_tiny_model("llama"), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=2))
    plain.save_pretrained(tmp_path / "plain")
    with pytest.raises(TPVError, match="no origin known for adapter folder .* pass origin="):
        TaskPromptVector.from_peft(tmp_path / "plain")
    with pytest.raises(
        TPVError, match="no origin known for adapter 'default' of this PeftModel.*seed= the torch.manual_seed"
    ):
        TaskPromptVector.from_peft(plain)
    origin.save(tmp_path / "o.origin.safetensors")
    vector = TaskPromptVector.from_peft(tmp_path / "plain", origin=tmp_path / "o.origin.safetensors")
    torch.testing.assert_close(vector.tensor, get_prompt(plain) - origin.tensor)

    lora = get_peft_model(make_tiny_model("llama"), LoraConfig(target_modules=["q_proj"], r=2))
    lora.save_pretrained(tmp_path / "lora")
    with pytest.raises(TPVError, match="is a LORA adapter, but task prompt vectors need a PROMPT_TUNING adapter"):
        TaskPromptVector.from_peft(tmp_path / "lora", origin=origin)
    with pytest.raises(TPVError, match="adapter 'default' is a LORA adapter"):
        get_prompt(lora)
    prefix = get_peft_model(make_tiny_model("llama"), PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=2))
    with pytest.raises(TPVError, match="is a PREFIX_TUNING adapter"):
        TaskPromptVector.from_peft(prefix, origin=origin)
    with pytest.raises(
        FileNotFoundError, match="'.*nothing-here' is neither an existing folder or file nor a Hub repo"
    ):
        TaskPromptVector.from_peft(tmp_path / "nothing-here")
    with pytest.raises(TPVError, match="expected a peft.PeftModel"):
        get_prompt(model)


def test_bin_adapter_is_read_without_unpickling_code(make_tiny_model, tmp_path):
    model = make_tiny_model("llama")
    origin = make_origin(model, 2, seed=0)
    peft_model = init_prompt_tuning(model, origin=origin)
    peft_model.save_pretrained(tmp_path / "bin", safe_serialization=False)
    assert (tmp_path / "bin" / "adapter_model.bin").is_file()
    vector = TaskPromptVector.from_peft(tmp_path / "bin")
    assert torch.count_nonzero(vector.tensor) == 0


def test_init_errors(make_tiny_model):
    model = make_tiny_model("llama")
    origin = make_origin(model, 2, seed=0)
    with pytest.raises(TPVError, match=r"needs origin=\.\.\."):
        init_prompt_tuning(model)
    with pytest.raises(TPVError, match="token_dim 8 but the model's embeddings have 16"):
        init_prompt_tuning(model, origin=torch.zeros(2, 8))
    with pytest.raises(TPVError, match="scale inf: the scale must be finite"):
        init_prompt_tuning(model, _vector_for(origin, 0, "a"), origin=origin, scale=float("inf"))
    with pytest.raises(TPVError, match="cannot combine an empty list"):
        init_prompt_tuning(model, [], origin=origin)
    peft_model = init_prompt_tuning(model, origin=origin)
    with pytest.raises(TPVError, match="got a PeftModel"):
        init_prompt_tuning(peft_model, origin=origin)
    with pytest.raises(
        TPVError, match=r"cannot set a prompt of shape \(3, 16\) on adapter 'default' of shape \(2, 16\)"
    ):
        set_prompt(peft_model, torch.zeros(3, 16))
    with pytest.raises(TPVError, match="prompt holds 1 NaN/inf"):
        set_prompt(peft_model, torch.tensor([[float("nan")] + [0.0] * 15, [0.0] * 16]))


def _hub_cache(cache_dir, repo_id, folder, commit="0123456789abcdef0123456789abcdef01234567"):
    # huggingface_hub's own cache layout: models--owner--name/{refs/main, snapshots/<commit>/...}.
    repo = cache_dir / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    shutil.copytree(folder, snapshot)
    return commit


def test_from_peft_takes_a_hub_adapter_id_from_the_cache(make_tiny_model, tmp_path, monkeypatch):
    model = make_tiny_model("llama")
    origin = make_origin(model, 3, seed=4)
    peft_model = init_prompt_tuning(model, origin=origin)
    set_prompt(peft_model, origin.tensor + 0.5)
    peft_model.save_pretrained(tmp_path / "adapter")
    commit = _hub_cache(tmp_path / "cache", "me/sst2-adapter", tmp_path / "adapter")
    vector = TaskPromptVector.from_peft(
        "me/sst2-adapter", cache_dir=tmp_path / "cache", revision=commit, local_files_only=True
    )
    torch.testing.assert_close(vector.tensor, torch.full((3, 16), 0.5))
    assert vector.tasks == {"sst2-adapter": 1.0}  # the repo's name, not the snapshot's commit
    with pytest.raises(TPVRepoNotFoundError, match="cannot get the adapter 'me/other' in the local Hub cache"):
        TaskPromptVector.from_peft("me/other", cache_dir=tmp_path / "cache")
    # A local folder of the same spelling wins over the Hub id.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "me").mkdir()
    shutil.copytree(tmp_path / "adapter", tmp_path / "me" / "sst2-adapter")
    assert TaskPromptVector.from_peft("me/sst2-adapter").tasks == {"sst2-adapter": 1.0}


@pytest.mark.parametrize("kind", ["gpt2", "t5"])
@pytest.mark.parametrize("tokens", [3, 7])  # shorter than the text (cut) and longer (repeated)
def test_text_init_origin_is_the_prompt_peft_initialises(make_tiny_model, word_tokenizer, tmp_path, kind, tokens):
    from peft import PromptTuningConfig

    word_tokenizer.save_pretrained(tmp_path / "tokenizer")
    config = PromptTuningConfig(
        task_type="SEQ_2_SEQ_LM" if kind == "t5" else "CAUSAL_LM",
        num_virtual_tokens=tokens,
        prompt_tuning_init="TEXT",
        prompt_tuning_init_text="the movie was good",
        tokenizer_name_or_path=str(tmp_path / "tokenizer"),
    )
    peft_model = get_peft_model(make_tiny_model(kind), config)
    origin = origin_from_peft_config(peft_model.peft_config["default"], peft_model)
    assert torch.equal(origin.tensor, get_prompt(peft_model))
    assert origin.method == "text" and origin.recipe.startswith('text("the movie was good", tokenizer=')
    # from_peft accepts the TEXT adapter: in memory, and from its folder with the base model.
    set_prompt(peft_model, get_prompt(peft_model) + 1.0)
    torch.testing.assert_close(TaskPromptVector.from_peft(peft_model).tensor, torch.ones(origin.shape))
    peft_model.save_pretrained(tmp_path / "adapter")
    with pytest.raises(TPVError, match="initialised by PEFT from its init text; pass model= the base model"):
        TaskPromptVector.from_peft(tmp_path / "adapter")
    vector = TaskPromptVector.from_peft(tmp_path / "adapter", model=make_tiny_model(kind), tokenizer=word_tokenizer)
    torch.testing.assert_close(vector.tensor, torch.ones(origin.shape))


@pytest.mark.parametrize("init", ["SAMPLE_VOCAB", "RANDOM"])
def test_drawn_inits_are_rebuilt_only_from_their_seed(make_tiny_model, init):
    from peft import PromptTuningConfig

    config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, prompt_tuning_init=init)
    model = make_tiny_model("gpt2")
    torch.manual_seed(11)  # right before get_peft_model, as a user would seed a run
    peft_model = get_peft_model(model, config)
    state = torch.random.get_rng_state()
    origin = origin_from_peft_config(config, peft_model, seed=11)
    assert torch.equal(origin.tensor, get_prompt(peft_model)) and origin.recipe == f"peft_{init.lower()}(seed=11)"
    assert torch.equal(torch.random.get_rng_state(), state)  # the replay leaves the global generator alone
    assert not torch.equal(origin_from_peft_config(config, peft_model, seed=12).tensor, origin.tensor)
    with pytest.raises(TPVError, match=f"initialised with {init} has no recorded origin.*Pass seed= the"):
        origin_from_peft_config(config, peft_model)
    assert torch.count_nonzero(TaskPromptVector.from_peft(peft_model, seed=11).tensor) == 0


def test_a_peft_model_loaded_by_peft_from_a_tpv_folder(make_tiny_model, tmp_path):
    from tpv.bridge.peft_io import load_prompt_adapter

    model = make_tiny_model("llama")
    origin = make_origin(model, 3, seed=1)
    peft_model = init_prompt_tuning(model, origin=origin)
    set_prompt(peft_model, origin.tensor + 2.0)
    peft_model.save_pretrained(tmp_path / "run")
    loaded = PeftModel.from_pretrained(make_tiny_model("llama"), tmp_path / "run")
    # PEFT records nothing of the folder it read, so tpv cannot find the origin by itself: the error says so.
    with pytest.raises(TPVError, match="origin='<adapter folder>' when it was loaded with PeftModel.from_pretrained"):
        TaskPromptVector.from_peft(loaded)
    torch.testing.assert_close(
        TaskPromptVector.from_peft(loaded, origin=tmp_path / "run").tensor, torch.full((3, 16), 2.0)
    )
    # tpv's loader remembers it.
    remembered = load_prompt_adapter(make_tiny_model("llama"), tmp_path / "run")
    torch.testing.assert_close(TaskPromptVector.from_peft(remembered).tensor, torch.full((3, 16), 2.0))
