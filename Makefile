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
	$(BIN)/python -m pip install --quiet --build-constraint scripts/build-constraints.txt \
		-e '.[dev,hf,wandb,visdom]'
	@rm -f $(VENV)/.installed-* && touch $@

demo: setup
	$(BIN)/modelviz summary vgg16 3x224x224 --device cpu
	@mkdir -p $(ARTIFACTS)
	$(BIN)/modelviz summary sample_models/llama.py:llama_7b int64:128 --device meta
	$(BIN)/modelviz summary resnet18 --columns all -o $(ARTIFACTS)/resnet18_summary.md
	$(BIN)/modelviz graph resnet18 -o $(ARTIFACTS)/resnet18.svg
	$(BIN)/modelviz graph resnet18 -o $(ARTIFACTS)/resnet18.html
	$(BIN)/modelviz graph sample_models.seeds:Net 1x28x28 --view autograd -o $(ARTIFACTS)/net_autograd.svg
	$(BIN)/modelviz activations resnet18 --layer conv1 --layer layer4 --hist -o $(ARTIFACTS)/activations
	$(BIN)/modelviz export-onnx resnet18 -o $(ARTIFACTS)/resnet18.onnx
	$(BIN)/modelviz memory resnet50 -b 32 --optimizer adamw --device meta --fit h100
	$(BIN)/modelviz profile resnet18 --depth 1 --device cpu
	$(BIN)/modelviz tensorboard resnet18 --logdir $(ARTIFACTS)/runs/resnet18
	$(BIN)/modelviz report resnet18 -o $(ARTIFACTS)/report
	@echo "demo artifacts are in $(ARTIFACTS)/: open $(ARTIFACTS)/report/index.html"

test: setup
	@scripts/system-deps.sh chromium
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q

lint: setup
	$(BIN)/ruff check modelviz tests sample_models benchmarks
	$(BIN)/mypy

bench: setup
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(ARTIFACTS) .pytest_cache .mypy_cache .ruff_cache
