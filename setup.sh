#!/usr/bin/env bash
# Creates .venv (once) and installs the project into it, editable, with test tools.
# On a machine without an NVIDIA GPU, torch is installed first as the small CPU build, so the
# dependency range in pyproject.toml does not pull a multi-GB CUDA build. Override with
#   TORCH_SPEC="torch==2.13.0" TORCH_INDEX_URL=<your wheel index> ./setup.sh
set -euo pipefail
cd "$(dirname "$0")"
venv=${MARL_VENV:-.venv}
python=${PYTHON:-python3}
if [[ ! -x $venv/bin/python ]]; then
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip >/dev/null 2>&1 || true
fi
pip=("$venv/bin/pip" install -q)
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup: NVIDIA GPU found, installing the default (CUDA) torch build" >&2
    "${pip[@]}" "${TORCH_SPEC:-torch>=2.5,<2.14}"
  else
    echo "setup: no GPU found, installing the CPU build of torch" >&2
    "${pip[@]}" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "${TORCH_SPEC:-torch==2.13.0}"
  fi
fi
"${pip[@]}" -e ".[dev]"
echo "setup: ready ($venv)" >&2
