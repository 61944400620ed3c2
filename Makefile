# Thin wrappers over `python -m <package>`. Every target depends on the venv, so a fresh clone
# needs no separate setup step. DATA= moves the generated-data root (default: data/).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
DATA ?= data
PROFILE ?= synthetic
DATASET ?= synthetic
ARGS ?=  # extra pipelines.yaml overrides, e.g. ARGS="synthetic.seed=1"
export HUMR_DATA := $(abspath $(DATA))

.PHONY: setup test lint demo data body-models precompute train eval eval-emdb eval-3dpw bench clean

setup: $(VENV)/.installed

# A torch that is already in the venv (e.g. a CUDA build installed by a GPU user) is kept:
# setup.cfg asks for a range that it satisfies, so pip never replaces it.
$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

test: setup
	$(PY) -m pytest -q

lint: setup
	$(PY) -m flake8 core body stores preprocess train eval benchmarks tests

body-models: setup
	$(PY) -m body synthesize --out $(DATA)/raw/body_models/synthetic

bench: setup
	$(PY) -m benchmarks --out $(DATA)/reports/bench

demo: setup
	@echo "make demo: the end-to-end synthetic chain (data, precompute, train, eval) is not built yet (issue 6)."; exit 2

data: setup
	$(PY) -m preprocess data --dataset $(DATASET) $(ARGS)

precompute: setup
	$(PY) -m preprocess precompute $(DATASET) $(ARGS)

train: setup
	@echo "make train PROFILE=$(PROFILE): stage two is not built yet (issue 5)."; exit 2

eval eval-emdb eval-3dpw: setup
	@echo "make $@: evaluation is not built yet (issue 6)."; exit 2

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
