#!/usr/bin/env bash
# Debian packages the tests need. Idempotent: installs only what is missing.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

needed=()
command -v go >/dev/null || needed+=(golang-go)
command -v git >/dev/null || needed+=(git)
command -v curl >/dev/null || needed+=(curl)
if [ ${#needed[@]} -gt 0 ]; then
  log "installing Debian packages: ${needed[*]}"
  apt_prefix=(); [ "$(id -u)" = 0 ] || apt_prefix=(sudo)
  "${apt_prefix[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${apt_prefix[@]}" apt-get install -y -qq --no-install-recommends "${needed[@]}"
fi
