"""Shared fixtures: tiny random Hugging Face models built from configs, so the fast suite needs no download."""

import os
from pathlib import Path

import pytest
import torch

# A stray download must fail fast instead of hanging on this offline machine.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# dtype="auto" picks by this machine's hardware; the suite's results must not, so it runs in float32 unless
# TPV_DTYPE says otherwise (tests of the auto choice clear it and mock the hardware).
os.environ.setdefault("TPV_DTYPE", "float32")

# Under pytest-xdist (`-n auto`) the workers share the cores: each takes its share of torch's threads, as
# two workers of two threads each on two cores run slower than one thread each.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT") and "OMP_NUM_THREADS" not in os.environ:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if "TPV_DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
    os.environ["TPV_DATA_DIR"] = str(SHARED_DATA)


def _tiny_llama():
    from tpv.experiments.tiny import tiny_llama

    return tiny_llama()


def _tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=128, n_embd=16, n_layer=2, n_head=2, n_positions=256, bos_token_id=1, eos_token_id=2)
    return GPT2LMHeadModel(config).eval()


def _tiny_t5():
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    config = T5Config(
        vocab_size=128,
        d_model=16,
        d_kv=8,
        d_ff=32,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=2,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    return T5ForConditionalGeneration(config).eval()


TINY_MODELS = {"llama": _tiny_llama, "gpt2": _tiny_gpt2, "t5": _tiny_t5}


@pytest.fixture
def make_tiny_model():
    """Factory: a fresh tiny model per call, because PEFT wrapping mutates the base model."""
    return lambda kind="llama": TINY_MODELS[kind]()


@pytest.fixture(params=["llama", "t5"])
def tiny_model(request):
    """A fresh tiny causal LM and a fresh tiny seq2seq model, in turn."""
    return TINY_MODELS[request.param]()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = Path(os.environ.get("TPV_DATA_DIR", SHARED_DATA))
    if not path.is_dir():
        pytest.fail(f"the benchmark subsets are missing at {path}; set TPV_DATA_DIR to ../shared/data")
    return path


TOY_WORDS = [
    "text:",
    "label:",
    "negative",
    "positive",
    "good",
    "bad",
    "fun",
    "dull",
    "movie",
    "plot",
    "a",
    "the",
    "very",
    "not",
    "great",
    "awful",
    "film",
    "story",
    "is",
    "was",
]


def make_word_tokenizer(vocab_size: int = 128):
    """A word-level fast tokenizer over TOY_WORDS, with pad=0, bos=1, eos=2 like the tiny models' configs."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    for word in TOY_WORDS:
        vocab[word] = len(vocab)
    assert len(vocab) <= vocab_size
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


@pytest.fixture
def word_tokenizer():
    return make_word_tokenizer()


@pytest.fixture
def toy_task():
    """A two-class task over the toy vocabulary (not registered, so tests leave the registry alone)."""
    from tpv.data import Task

    return Task("toy", "sentiment", "text: {text} label:", ("negative", "positive"))


def toy_examples(n: int, seed: int = 0) -> list[dict]:
    """Examples whose label is decided by one word, so a prompt can learn it."""
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        label = rng.randint(0, 1)
        word = rng.choice(["good", "great", "fun"] if label else ["bad", "awful", "dull"])
        filler = " ".join(
            rng.choice(["the", "movie", "plot", "a", "film", "story", "is", "was"]) for _ in range(rng.randint(1, 6))
        )
        out.append({"text": f"{filler} {word}", "label": label})
    return out


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A tiny Llama and the word tokenizer saved as a folder, so `--model DIR` loads like a Hub model."""
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
    )
    folder = tmp_path_factory.mktemp("tiny-model")
    LlamaForCausalLM(config).save_pretrained(folder)
    make_word_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture
def stand_in_hub(monkeypatch, tmp_path):
    """Stand-ins for huggingface_hub's network calls that record them and serve uploads back from a local 'remote'.

    Everything else of huggingface_hub (ModelCard, the cache) is the real thing.
    """
    import types

    import huggingface_hub

    calls = []
    remote = tmp_path / "remote"

    class HfApi:
        def __init__(self, token=None, library_name=None):
            calls.append(("HfApi", token, library_name))

        def create_repo(self, repo_id, repo_type=None, private=False, exist_ok=False):
            calls.append(("create_repo", repo_id, repo_type, private, exist_ok))
            return types.SimpleNamespace(url=f"https://huggingface.co/{repo_id}")

        def create_branch(self, repo_id, branch, repo_type=None, exist_ok=False):
            calls.append(("create_branch", repo_id, branch, repo_type, exist_ok))

        def upload_folder(
            self,
            repo_id,
            folder_path,
            repo_type=None,
            commit_message=None,
            allow_patterns=None,
            revision=None,
            create_pr=False,
        ):
            names = sorted(p.name for p in Path(folder_path).iterdir())
            calls.append(("upload_folder", repo_id, repo_type, names, commit_message, allow_patterns))
            calls.append(("upload_target", revision, create_pr))
            target = remote / repo_id
            target.mkdir(parents=True, exist_ok=True)
            for path in Path(folder_path).iterdir():
                (target / path.name).write_bytes(path.read_bytes())
            # The real return type, so callers see what huggingface_hub gives them.
            full_id = repo_id if "/" in repo_id else f"user/{repo_id}"  # the Hub puts a bare name under the user
            pr_url = f"https://huggingface.co/{full_id}/discussions/1" if create_pr else None
            return huggingface_hub.CommitInfo(
                commit_url=f"https://huggingface.co/{full_id}/commit/{'f' * 40}",
                commit_message=commit_message,
                commit_description="",
                oid="f" * 40,
                pr_url=pr_url,
            )

    def snapshot_download(repo_id, **kwargs):
        calls.append(("snapshot_download", repo_id, kwargs))
        if not (remote / repo_id).is_dir():
            raise OSError(f"404 Client Error: Repository Not Found for url: https://huggingface.co/{repo_id}")
        return str(remote / repo_id)

    monkeypatch.setattr(huggingface_hub, "HfApi", HfApi)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return calls


@pytest.fixture(autouse=True)
def _task_registry_left_as_found():
    """Tasks a test registers (Task.from_files, from_dataset, the docs' own-data blocks) end with the test.

    The registry is one process-wide dict and xdist runs many test files in one worker: a leaked name would make
    a later test see a task it never registered (or refuse to register its own). Registrations made by wider-scoped
    fixtures happen before this snapshot and are kept.
    """
    from tpv.data.registry import TASKS

    saved = dict(TASKS)
    yield
    TASKS.clear()
    TASKS.update(saved)
