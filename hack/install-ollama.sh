#!/usr/bin/env bash
# Builds the Ollama server (CPU only) from the Go module proxy into a versioned cache folder outside
# the checkout:
#   ${LLMOP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llm-operator}/tools/ollama-<version>/bin/ollama
#
# `go install github.com/ollama/ollama@<version>` compiles the vendored llama.cpp/ggml with cgo (g++),
# CPU backend linked in statically; no cmake, no GPU libraries. The module zip that the proxy serves
# leaves out llama.cpp's vendor/ folder (Go drops every vendor/ directory from module zips), so the
# three header-only libraries it holds come from elsewhere, on the include path through CGO_CPPFLAGS:
#   nlohmann/json.hpp, stb/stb_image.h  Debian's nlohmann-json3-dev and libstb-dev (/usr/include)
#   miniaudio/miniaudio.h               the sdist of PyPI's `miniaudio` (pinned by sha256 below)
#
# Cold build: ~250 CPU-seconds, 1 GB RSS: 3.5 min wall on 2 cores, 8.5 min when the machine was busy
# (nice'd, so it yields to the tests). Skips when the binary is there (remove the folder to
# rebuild). Progress goes to stderr; the last line on stdout is the binary's path.
set -euo pipefail

# shellcheck source=lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

# OLLAMA_VERSION comes from versions.env (through lib.sh).
OLLAMA_DIR="$LLMOP_CACHE/tools/ollama-$OLLAMA_VERSION"
OLLAMA_BIN="$OLLAMA_DIR/bin/ollama"
# miniaudio.h 0.11.25 (llama.cpp's vendored copy is a 0.11.x too; only its decoder is compiled).
MINIAUDIO_SDIST=miniaudio==1.71
MINIAUDIO_SDIST_SHA256=ff51e2887bb673e2e757752b586b3dc924d59aa5fbcae9bbc45f4a111bd3262b

if [ -x "$OLLAMA_BIN" ]; then
  log "ollama $OLLAMA_VERSION already built: $OLLAMA_BIN"
  echo "$OLLAMA_BIN"
  exit 0
fi

mkdir -p "$OLLAMA_DIR/bin"
# Two callers at once: one builds, the other waits and then finds the binary.
exec 9>"$OLLAMA_DIR.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9
fi
if [ -x "$OLLAMA_BIN" ]; then
  log "ollama $OLLAMA_VERSION built by another process: $OLLAMA_BIN"
  echo "$OLLAMA_BIN"
  exit 0
fi

started=$SECONDS

# Debian packages: the C/C++ toolchain and two header-only libraries.
needed=()
command -v gcc >/dev/null || needed+=(gcc)
command -v g++ >/dev/null || needed+=(g++)
[ -f /usr/include/nlohmann/json.hpp ] || needed+=(nlohmann-json3-dev)
[ -f /usr/include/stb/stb_image.h ] || needed+=(libstb-dev)
if [ ${#needed[@]} -gt 0 ]; then
  log "installing Debian packages: ${needed[*]}"
  apt_prefix=(); [ "$(id -u)" = 0 ] || apt_prefix=(sudo)
  "${apt_prefix[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${apt_prefix[@]}" apt-get install -y -qq --no-install-recommends "${needed[@]}" >&2
fi

# miniaudio.h, from the sdist.
vendor="$OLLAMA_DIR/vendor"
if [ ! -f "$vendor/miniaudio/miniaudio.h" ]; then
  dl="$(mktemp -d)"
  trap 'rm -rf "$dl"' EXIT
  log "fetching miniaudio.h from the $MINIAUDIO_SDIST sdist"
  # pip prepares the sdist's metadata in an isolated build env (setuptools from PyPI); nothing is installed.
  python3 -m pip download -q --no-deps --no-binary :all: -d "$dl" "$MINIAUDIO_SDIST" >&2
  sdist="$(ls "$dl"/miniaudio-*.tar.gz)"
  echo "$MINIAUDIO_SDIST_SHA256  $sdist" | sha256sum -c --quiet - >&2
  mkdir -p "$vendor/miniaudio"
  tar -xzf "$sdist" -C "$dl" --wildcards '*/miniaudio/miniaudio.h'
  cp "$dl"/miniaudio-*/miniaudio/miniaudio.h "$vendor/miniaudio/miniaudio.h"
fi

log "ollama $OLLAMA_VERSION: go install (cgo, CPU only; 4-9 min cold on 2 cores)"
# GOFLAGS replaces the caller's; -trimpath keeps local paths out of the binary. The -X flags set what
# /api/version reports (else 0.0.0) and gin's release mode, as upstream's release scripts do.
(
  cd "$OLLAMA_DIR"
  with_heartbeat "ollama" env CGO_ENABLED=1 GOFLAGS="-mod=mod -trimpath" GOBIN="$OLLAMA_DIR/bin" \
    CGO_CPPFLAGS="-I$vendor ${CGO_CPPFLAGS:-}" \
    nice -n 10 go install \
    -ldflags "-s -w -X=github.com/ollama/ollama/version.Version=${OLLAMA_VERSION#v} -X=github.com/ollama/ollama/server.mode=release" \
    "github.com/ollama/ollama@$OLLAMA_VERSION"
)
[ -x "$OLLAMA_BIN" ] || { log "missing $OLLAMA_BIN after the build"; exit 1; }
log "ollama $OLLAMA_VERSION ready: $OLLAMA_BIN ($(du -h "$OLLAMA_BIN" | cut -f1), total $((SECONDS - started))s)"
echo "$OLLAMA_BIN"
