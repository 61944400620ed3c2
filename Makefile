# Thin wrappers over `python -m <package>`. Every target depends on the venv, so a fresh clone
# needs no separate setup step. DATA= moves the generated-data root (default: data/).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
DATA ?= data
# PROFILE= unset: the rule of core/profiles.py (a real dataset runs with paper, else synthetic)
PROFILE ?=
DATASET ?= synthetic
# extra pipelines.yaml overrides, e.g. ARGS="synthetic.seed=1": every step of a target gets the
# same ARGS (so a store precomputed by `make train ARGS=…` matches the one training reads), and
# every step that reads a profile gets PROFILE when it is set
ARGS ?=
P := $(if $(PROFILE),profile=$(PROFILE))
export HUMR_DATA := $(abspath $(DATA))

.PHONY: setup test lint demo data body-models precompute train eval eval-emdb eval-3dpw ablation \
	bench infer clean import-reference

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
	$(PY) -m preprocess precompute $(DATASET) $(P) $(ARGS)

# the synthetic-world stores of train.stores are precomputed first (a no-op when complete);
# real ones by make precompute DATASET=…
train: setup
	$(PY) -m preprocess precompute train.stores $(P) $(ARGS)
	$(PY) -m train fit $(P) $(ARGS)

# DATASET=synthetic evaluates its test split (precomputed first, a no-op when complete); CKPT=
# picks a checkpoint (default: the latest run)
eval: setup
	$(if $(filter synthetic,$(DATASET)),$(PY) -m preprocess precompute synthetic-test $(P) $(ARGS))
	$(PY) -m eval run --dataset $(if $(filter synthetic,$(DATASET)),synthetic-test,$(DATASET)) \
		$(if $(CKPT),--ckpt $(CKPT)) $(P) $(ARGS)

eval-emdb: setup
	$(PY) -m eval run --dataset emdb $(if $(CKPT),--ckpt $(CKPT)) $(P) $(ARGS)

eval-3dpw: setup
	$(PY) -m eval run --dataset 3dpw-test $(if $(CKPT),--ckpt $(CKPT)) $(P) $(ARGS)

# the reference release's files into a store: NPZ= annotation file, SAMPLES= its heatmap_samples
# folder, IMAGES= the folder its imgnames start from, NAME= store name; optional MASKS=, LAYOUT=
# (bedlam, agora, emdb, 3dpw), SPLIT=, ROOT= (docs/real_data.md)
import-reference: setup
	$(PY) -m preprocess import-reference --npz $(NPZ) --samples $(SAMPLES) --images $(IMAGES) \
		--name $(NAME) $(if $(MASKS),--masks $(MASKS)) $(if $(LAYOUT),--layout $(LAYOUT)) \
		$(if $(SPLIT),--split $(SPLIT)) $(if $(ROOT),--root $(ROOT)) $(P) $(ARGS)


# the demo on one image: IMAGE= (required), BOX=x0,y0,x1,y1 (default: the image's label file or
# the whole image), CKPT= (default: the latest run); writes $(DATA)/reports/infer/<image stem>/
infer: setup
	$(if $(IMAGE),,$(error IMAGE= is required, e.g. make infer IMAGE=photo.jpg))
	$(PY) -m infer $(IMAGE) $(if $(BOX),--box $(BOX)) $(if $(CKPT),--ckpt $(CKPT)) \
		$(P) $(ARGS)

# the paper's ablations (Tables 3, S2) on the synthetic world, 8 variants × 3 seeds; QUICK=1: minutes
ablation: setup
	$(PY) -m preprocess precompute synthetic $(ARGS)
	$(PY) -m eval ablation $(if $(QUICK),--quick) $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
