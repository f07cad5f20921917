#!/usr/bin/env bash
# Install the LiteLLM proxy, at the version of the router image, into its own venv outside the checkout:
#   ${LLMOP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llm-operator}/venvs/litellm-<version>
#
# litellm[proxy,proxy-runtime] plus the Prisma client the image also has (see hack/litellm-lock.py).
# Every package is pinned by sha256 in hack/litellm-requirements.txt (pip --require-hashes): LiteLLM
# 1.82.7 and 1.82.8 were published compromised on PyPI, so nothing is installed that the lock file does
# not name by hash. Regenerate the lock with hack/litellm-lock.py when the version changes.
#
# Idempotent: a marker file holding the lock file's checksum skips the install when nothing changed.
# Progress and timings go to stderr; the last line on stdout is the venv's python.
# Environment: LITELLM_PYTHON (default python3) creates the venv; it must match the lock's interpreter.
set -euo pipefail

# shellcheck source=lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

LITELLM_VERSION=1.108.7
LOCK_FILE="$HACK_DIR/litellm-requirements.txt"
VENV="$LLMOP_CACHE/venvs/litellm-$LITELLM_VERSION"
MARKER="$VENV/.installed"
PYTHON="${LITELLM_PYTHON:-python3}"

lock_sum="$(sha256sum "$LOCK_FILE" | cut -d' ' -f1)"
if ! grep -q "^litellm\[proxy,proxy-runtime\]==$LITELLM_VERSION " "$LOCK_FILE"; then
  log "$LOCK_FILE does not pin litellm $LITELLM_VERSION: run hack/litellm-lock.py $LITELLM_VERSION"
  exit 1
fi

if [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$lock_sum" ] && [ -x "$VENV/bin/python" ]; then
  log "litellm $LITELLM_VERSION already installed in $VENV"
  echo "$VENV/bin/python"
  exit 0
fi

mkdir -p "$(dirname "$VENV")"
# Two test processes may ask at once: one installs, the other waits and then finds the marker.
exec 9>"$VENV.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9
fi
if [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$lock_sum" ] && [ -x "$VENV/bin/python" ]; then
  log "litellm $LITELLM_VERSION installed by another process in $VENV"
  echo "$VENV/bin/python"
  exit 0
fi

start=$SECONDS
want_py="$(sed -n 's/^# Resolved by pip [^ ]* for CPython \([0-9]*\.[0-9]*\)\..*/\1/p' "$LOCK_FILE")"
have_py="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ -n "$want_py" ] && [ "$want_py" != "$have_py" ]; then
  log "warning: the lock was made for Python $want_py, $PYTHON is $have_py; hashes of binary wheels will not match"
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV with $PYTHON ($have_py)"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
fi
# An existing venv (an earlier lock) is brought up to the lock: pip installs only what differs.
log "installing litellm[proxy,proxy-runtime]==$LITELLM_VERSION ($(grep -c -- '--hash=' "$LOCK_FILE") packages, by hash)"
# --only-binary: no package builds code at install time; --require-hashes: nothing unpinned slips in.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir \
  --require-hashes --only-binary :all: -r "$LOCK_FILE" >&2
log "pip install took $((SECONDS - start))s"

t=$SECONDS
LITELLM_LOCAL_MODEL_COST_MAP=True "$VENV/bin/python" -c "import litellm.proxy.proxy_server, prometheus_client, prisma" >&2
installed="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))')"
if [ "$installed" != "$LITELLM_VERSION" ]; then
  log "installed litellm $installed, expected $LITELLM_VERSION"
  exit 1
fi
log "import check took $((SECONDS - t))s; total $((SECONDS - start))s"

echo "$lock_sum" >"$MARKER"
echo "$VENV/bin/python"
