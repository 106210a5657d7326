"""The installed package: public API and import hygiene."""

import subprocess
import sys

import tpv

OPTIONAL = ["scipy", "sklearn", "matplotlib", "gguf", "datasets", "nbclient", "yaml", "hypothesis", "accelerate",
            "huggingface_hub", "pandas"]


def test_import_tpv_pulls_in_only_required_dependencies():
    code = f"import sys, tpv; print([m for m in {OPTIONAL!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_public_api_is_exported():
    for name in ("TaskPromptVector", "make_origin", "init_prompt_tuning", "get_prompt", "set_prompt", "TPVError"):
        assert name in tpv.__all__ and hasattr(tpv, name)
    assert issubclass(tpv.TPVError, ValueError)
