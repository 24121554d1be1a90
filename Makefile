# Two commands for a newcomer: `make run` (install what is missing, run the quickstart) and `make test`.
# Everything lands in .venv; nothing is installed system-wide.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0
PYTEST_ARGS ?=

.PHONY: run test lint format install install-dev crd manifests docs e2e-kind clean

run: $(VENV)/.core
	@start=$$(date +%s); \
	$(BIN)/llmp run examples/quickstart.yaml; code=$$?; \
	echo "quickstart wall time: $$(( $$(date +%s) - start ))s"; exit $$code

test: $(VENV)/.dev .tools/bin/kubectl .tools/bin/prometheus
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	PATH="$(CURDIR)/.tools/bin:$$PATH" $(BIN)/python -m pytest $(PYTEST_ARGS)

lint format: $(VENV)/.dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

install: $(VENV)/.core
install-dev: $(VENV)/.dev

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch first and pinned: the CPU build on local disk; an unpinned torch would pull a multi-GB CUDA build.
$(VENV)/.core: pyproject.toml | $(BIN)/python
	@t0=$$(date +%s); \
	$(BIN)/python -m pip install -q "$(TORCH)" && $(BIN)/python -m pip install -q -e ".[serve]" && \
	echo "installed core dependencies in $$(( $$(date +%s) - t0 ))s"
	@touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.core
	$(BIN)/python -m pip install -q "$(TORCH)" -e ".[dev,k8s,data,eval,serve,ray]"
	@touch $@

.tools/bin/kubectl: | $(BIN)/python
	$(BIN)/python hack/install_kube_tools.py .tools/bin

# a real Prometheus for the dashboard tests (Debian's package, unpacked without root); elsewhere those tests skip
.tools/bin/prometheus: | $(BIN)/python
	$(BIN)/python hack/install_prometheus.py .tools/bin || echo "prometheus not installed: the tests that need it skip"

crd: $(VENV)/.core
	$(BIN)/llmp crd > manifests/crds/llmplatform.dev_llmjobs.yaml

# manifests/operator and manifests/monitoring: the Helm chart rendered for `kubectl apply` users
manifests: $(VENV)/.core .tools/bin/kubectl
	$(BIN)/python hack/render_manifests.py --helm .tools/bin/helm

docs: $(VENV)/.core
	$(BIN)/llmp reference > docs/reference.md

e2e-kind: $(VENV)/.dev .tools/bin/kubectl
	PATH="$(CURDIR)/.tools/bin:$$PATH" hack/e2e-kind.sh

clean:
	rm -rf runs .pytest_cache .ruff_cache
