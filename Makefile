# The README's first two commands: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
ARTIFACTS := artifacts

.PHONY: setup demo test lint bench clean

setup: $(STAMP)
	@scripts/system-deps.sh graphviz

# pip takes torch and torchvision from this machine's local disk where it has them (see README).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

demo: setup
	$(BIN)/modelviz summary vgg16 3x224x224 --device cpu
	@mkdir -p $(ARTIFACTS)
	$(BIN)/modelviz summary sample_models.seeds:Net 1x28x28 --columns all -o $(ARTIFACTS)/net_summary.md
	$(BIN)/modelviz summary sample_models.seeds:Net 1x28x28 -o $(ARTIFACTS)/net_summary.json
	$(BIN)/modelviz summary sample_models/llama.py:llama_7b int64:128 --device meta --fold --depth 2
	@echo "demo artifacts are in $(ARTIFACTS)/"

test: setup
	@scripts/system-deps.sh chromium
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q

lint: setup
	$(BIN)/ruff check modelviz tests sample_models benchmarks
	$(BIN)/mypy

bench: setup
	$(BIN)/python benchmarks/summary_vs_peers.py

clean:
	rm -rf $(VENV) $(ARTIFACTS) .pytest_cache .mypy_cache .ruff_cache
