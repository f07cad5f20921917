#!/usr/bin/env bash
# Debian packages for the real node and for building images without Docker: containerd and runc
# (the node's runtime), the CNI plugins, iptables, podman and mmdebstrap (images from a Debian base).
# Idempotent: installs only what is missing.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

needed=()
command -v containerd >/dev/null || needed+=(containerd)
command -v runc >/dev/null || needed+=(runc)
[ -x /usr/lib/cni/bridge ] || needed+=(containernetworking-plugins)
command -v iptables >/dev/null || needed+=(iptables)
command -v ip >/dev/null || needed+=(iproute2)
command -v conntrack >/dev/null || needed+=(conntrack)
command -v podman >/dev/null || needed+=(podman)
command -v mmdebstrap >/dev/null || needed+=(mmdebstrap)
if [ ${#needed[@]} -gt 0 ]; then
  log "installing Debian packages: ${needed[*]}"
  apt_prefix=(); [ "$(id -u)" = 0 ] || apt_prefix=(sudo)
  "${apt_prefix[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${apt_prefix[@]}" apt-get install -y -qq --no-install-recommends "${needed[@]}" >/dev/null
fi
