# The two commands of the README: `make run` and `make test`. Everything else is a step of them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXAMPLE ?= manifests/examples/vllm-awq-rtx4090.yaml
# Without a configured cluster (no $KUBECONFIG, no ~/.kube/config), `make run` uses the local one.
LOCAL_KUBECONFIG := $(shell bash hack/cluster.sh kubeconfig)
RUN_KUBECONFIG := $(or $(KUBECONFIG),$(wildcard $(HOME)/.kube/config),$(LOCAL_KUBECONFIG))
TOOLS_BIN := $(shell bash -c '. hack/lib.sh && echo $$TOOLS_BIN')

.PHONY: test run deps venv tools images image cluster cluster-down crd lint

## test: install everything, build and start the local control plane when needed, run every test
test: deps tools images
	$(BIN)/ruff check operator tests bench hack
	$(BIN)/pytest tests

## run: the operator in the foreground against $KUBECONFIG, else against the local cluster, with an example
run: venv tools
	@if [ "$(RUN_KUBECONFIG)" = "$(LOCAL_KUBECONFIG)" ]; then bash hack/cluster.sh up; fi
	PATH="$(TOOLS_BIN):$$PATH" kubectl --kubeconfig "$(RUN_KUBECONFIG)" apply --server-side -f crds/
	PATH="$(TOOLS_BIN):$$PATH" kubectl --kubeconfig "$(RUN_KUBECONFIG)" wait --for=condition=Established --timeout=60s crd/llmservices.serving.llm-operator.io
	PATH="$(TOOLS_BIN):$$PATH" kubectl --kubeconfig "$(RUN_KUBECONFIG)" apply -f "$(EXAMPLE)"
	$(BIN)/llm-operator run --kubeconfig "$(RUN_KUBECONFIG)" --all-namespaces

## deps: Python packages (pinned by hack/constraints.txt) and the Debian packages the e2e tests use
deps: venv
	bash hack/install-system-deps.sh

venv: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml hack/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c hack/constraints.txt -e ".[test,bench]"
	touch $@

tools:
	bash hack/build-tools.sh

## image: the operator's image from the Containerfile, with podman (no Docker needed); prints its name
image:
	bash hack/build-images.sh operator

## images: every image the e2e tests run on the real node (the operator's and the LiteLLM stand-in)
images:
	@t0=$$(date +%s); bash hack/build-images.sh operator >/dev/null && bash hack/build-images.sh litellm >/dev/null \
	  && echo "images ready in $$(( $$(date +%s) - t0 ))s"

cluster: tools
	bash hack/cluster.sh up

cluster-down:
	bash hack/cluster.sh down

## crd: regenerate the committed CRD from the pydantic models
crd: venv
	$(BIN)/llm-operator crd > crds/llmservices.serving.llm-operator.io.yaml
	cp crds/llmservices.serving.llm-operator.io.yaml charts/llm-operator/crds/

lint: venv
	$(BIN)/ruff check operator tests bench hack
