"""Beyond one process and one device: the shared prefix under DDP, refused back-ends, models placed by a device_map.

The two-process runs themselves (torchrun, gloo) live in tests/test_run_folder.py beside the one-process run they
are compared with; this file checks the pieces they rest on, in this process.
"""

import pytest
import torch

from conftest import make_word_tokenizer, toy_examples
from tpv import TPVError, init_prompt_tuning, make_origin
from tpv.data.encoding import collate, encode_examples
from tpv.engine.prefix import FULL, SHARED_PREFIX, as_forward, choose_engine, shared_prefix_obstacle
from tpv.engine.scoring import prompt_tuning_loss
from tpv.experiments.tiny import tiny_llama


def _batch(task, n=4):
    encoded = encode_examples(make_word_tokenizer(), task, toy_examples(n), seq2seq=False, max_length=64)
    return collate(encoded, 0, seq2seq=False)


def _prompt_grad(peft_model, batch, shared_prefix):
    peft_model.zero_grad()
    prompt_tuning_loss(peft_model, batch, shared_prefix=shared_prefix).backward()
    return peft_model.prompt_encoder["default"].embedding.weight.grad.clone()


@pytest.fixture
def one_process_group(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_the_shared_prefix_loss_reaches_the_ddp_reducer_only_as_the_wrapped_forward(one_process_group, toy_task):
    """DDP averages only what its reducer sees: a loss computed beside the wrapper would train each rank alone."""
    from torch.nn.parallel import DistributedDataParallel

    peft_model = init_prompt_tuning(tiny_llama(), origin=make_origin(tiny_llama(), 3, seed=0))
    batch = _batch(toy_task)
    expected = _prompt_grad(peft_model, batch, shared_prefix=True)
    wrapper = DistributedDataParallel(peft_model)
    reduced: list[torch.Tensor] = []

    def record(state, bucket):
        reduced.append(bucket.buffer().clone())
        future = torch.futures.Future()
        future.set_result(bucket.buffer())
        return future

    wrapper.register_comm_hook(None, record)

    peft_model.zero_grad()
    prompt_tuning_loss(peft_model, batch, shared_prefix=True).backward()  # beside the wrapper
    assert reduced == []

    peft_model.zero_grad()
    with as_forward(peft_model, lambda **inputs: prompt_tuning_loss(peft_model, inputs, shared_prefix=True)):
        loss = wrapper(**batch)
    loss.backward()
    assert len(reduced) == 1
    torch.testing.assert_close(reduced[0], expected.flatten())
    torch.testing.assert_close(peft_model.prompt_encoder["default"].embedding.weight.grad, expected)
    assert "forward" not in vars(peft_model)  # the model's own forward is back


def test_as_forward_restores_a_forward_set_on_the_instance():
    """accelerate wraps a model's forward on the instance (autocast); leaving the block must give that back."""
    layer = torch.nn.Linear(2, 2)
    wrapped = layer.forward
    layer.forward = wrapped
    with pytest.raises(RuntimeError, match="inside"):
        with as_forward(layer, lambda x: x):
            raise RuntimeError("inside")
    assert vars(layer)["forward"] is wrapped


# ---- models placed by a device_map -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llama")
    tiny_llama().save_pretrained(folder)
    make_word_tokenizer().save_pretrained(folder)
    return folder


def _offloaded(folder, tmp_path):
    """The tiny Llama with its second layer offloaded to disk: accelerate's hooks load it on every forward."""
    from tpv.bridge.models import load_model

    device_map = {
        "model.embed_tokens": "cpu",
        "model.layers.0": "cpu",
        "model.layers.1": "disk",
        "model.norm": "cpu",
        "model.rotary_emb": "cpu",
        "lm_head": "cpu",
    }
    model, _ = load_model(folder, dtype="float32", device_map=device_map, offload_folder=str(tmp_path / "offload"))
    return model


def test_a_model_offloaded_by_a_device_map_trains_on_the_shared_prefix(tiny_folder, toy_task, tmp_path):
    model = _offloaded(tiny_folder, tmp_path)
    assert hasattr(model.model.layers[1], "_hf_hook")  # accelerate dispatched it
    peft_model = init_prompt_tuning(model, origin=make_origin(model, 3, seed=0))
    assert choose_engine(peft_model) == SHARED_PREFIX  # cpu and disk both run on the CPU: one device
    batch = _batch(toy_task)
    torch.testing.assert_close(
        _prompt_grad(peft_model, batch, shared_prefix=True),
        _prompt_grad(peft_model, batch, shared_prefix=False),
        rtol=1e-4,
        atol=1e-6,
    )


def test_train_prompt_on_a_device_map_gives_the_vector_of_the_plain_model(tiny_folder, toy_task, tmp_path):
    from tpv.bridge.models import load_model
    from tpv.engine.training import train_prompt

    settings = dict(max_steps=4, batch_size=4, num_virtual_tokens=3, progress=False)
    plain, tokenizer = load_model(tiny_folder, dtype="float32")
    expected = train_prompt(plain, tokenizer, toy_task, 0, toy_examples(16), output_dir=tmp_path / "a", **settings)
    offloaded = _offloaded(tiny_folder, tmp_path)
    result = train_prompt(offloaded, tokenizer, toy_task, 0, toy_examples(16), output_dir=tmp_path / "b", **settings)
    assert result.engine == SHARED_PREFIX
    torch.testing.assert_close(result.vector.tensor, expected.vector.tensor, rtol=1e-4, atol=1e-6)


def test_a_device_map_over_several_accelerators_falls_back_and_says_why(caplog):
    """Decided from the map accelerate leaves on the model (no second accelerator here to run it on)."""
    model = tiny_llama()
    model.hf_device_map = {"model.embed_tokens": 0, "model.layers.0": 0, "model.layers.1": "cuda:1", "lm_head": 1}
    peft_model = init_prompt_tuning(model, origin=make_origin(model, 3, seed=0))
    assert shared_prefix_obstacle(peft_model) == (
        "its device_map runs layers on several devices (accelerator 0, accelerator 1), and the prefix cache would "
        "have to follow each layer to its device"
    )
    assert choose_engine(peft_model) == FULL
    with pytest.raises(TPVError, match="several devices"):
        choose_engine(peft_model, shared_prefix=True)


# ---- back-ends no test here can run --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, value, name",
    [("fsdp", "full_shard", "FSDP"), ("deepspeed", {"zero_optimization": {"stage": 3}}, "DeepSpeed")],
)
def test_untested_backends_are_refused_before_anything_is_written(toy_task, tmp_path, key, value, name):
    from tpv.engine.training import train_prompt

    with pytest.raises(TPVError, match=rf"args sets {key}=.* does not run under {name}, .*train with DDP instead"):
        train_prompt(
            tiny_llama(),
            make_word_tokenizer(),
            toy_task,
            toy_examples(8),
            origin=0,
            args={key: value},
            output_dir=tmp_path / "run",
            max_steps=1,
            num_virtual_tokens=2,
            progress=False,
        )
    assert not (tmp_path / "run").exists()


def test_accelerate_launch_with_fsdp_is_refused(toy_task, tmp_path, monkeypatch):
    """`accelerate launch --use_fsdp` tells Trainer through the environment, not through args."""
    from tpv.engine.training import train_prompt

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(TPVError, match=r"ACCELERATE_USE_FSDP=true \(accelerate launch --use_fsdp\)"):
        train_prompt(
            tiny_llama(), make_word_tokenizer(), toy_task, toy_examples(8), origin=0, output_dir=tmp_path, max_steps=1
        )
