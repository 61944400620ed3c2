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
# extra pipelines.yaml overrides, e.g. ARGS="synthetic.seed=1": every step of a target gets the
# same ARGS (so a store precomputed by `make train ARGS=…` matches the one training reads), and
# every step that reads a profile gets PROFILE
ARGS ?=
export HUMR_DATA := $(abspath $(DATA))

.PHONY: setup test lint demo data body-models precompute train eval eval-emdb eval-3dpw ablation \
	bench infer clean

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
	$(PY) -m flake8 core body stores synthetic preprocess train eval infer benchmarks tests

body-models: setup
	$(PY) -m synthetic body-models --out $(DATA)/raw/body_models/synthetic

bench: setup
	$(PY) -m benchmarks --out $(DATA)/reports/bench

# the whole chain on the synthetic world: each step resumes or skips what is already done
demo: setup
	$(PY) -m preprocess data --dataset synthetic $(ARGS)
	$(PY) -m preprocess precompute synthetic profile=synthetic $(ARGS)
	$(PY) -m train fit profile=synthetic $(ARGS)
	$(PY) -m eval run --dataset synthetic-test profile=synthetic $(ARGS)

data: setup
	$(PY) -m preprocess data --dataset $(DATASET) $(ARGS)

precompute: setup
	$(PY) -m preprocess precompute $(DATASET) profile=$(PROFILE) $(ARGS)

# the synthetic profile precomputes its stores first (a no-op when they are complete)
train: setup
	$(if $(filter synthetic,$(PROFILE)),$(PY) -m preprocess precompute synthetic \
		profile=$(PROFILE) $(ARGS) &&) \
	$(PY) -m train fit profile=$(PROFILE) $(ARGS)

# DATASET=synthetic evaluates its test split; CKPT= picks a checkpoint (default: the latest run)
eval: setup
	$(PY) -m eval run --dataset $(if $(filter synthetic,$(DATASET)),synthetic-test,$(DATASET)) \
		$(if $(CKPT),--ckpt $(CKPT)) profile=$(PROFILE) $(ARGS)

eval-emdb: setup
	$(PY) -m eval run --dataset emdb $(if $(CKPT),--ckpt $(CKPT)) profile=$(PROFILE) $(ARGS)

eval-3dpw: setup
	$(PY) -m eval run --dataset 3dpw-test $(if $(CKPT),--ckpt $(CKPT)) profile=$(PROFILE) $(ARGS)

# the demo on one image: IMAGE= (required), BOX=x0,y0,x1,y1 (default: the image's label file or
# the whole image), CKPT= (default: the latest run); writes $(DATA)/reports/infer/<image stem>/
infer: setup
	$(if $(IMAGE),,$(error IMAGE= is required, e.g. make infer IMAGE=photo.jpg))
	$(PY) -m infer $(IMAGE) $(if $(BOX),--box $(BOX)) $(if $(CKPT),--ckpt $(CKPT)) \
		profile=$(PROFILE) $(ARGS)

# the paper's ablations (Tables 3, S2) on the synthetic world, ≈ 45 min on 2 cores; QUICK=1: minutes
ablation: setup
	$(PY) -m preprocess precompute synthetic $(ARGS)
	$(PY) -m eval ablation $(if $(QUICK),--quick) $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
