# `make test` works from a fresh clone: it creates .venv, installs the pinned CPU torch wheel first
# (any other torch spec would pull several GB of CUDA wheels), then the project with its test extras.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
TORCH_PIN := torch==2.13.0
# NVIDIA's datacenter TensorRT stubs, for mypy only (kept out of site-packages: see tools/tensorrt_stubs.py).
STUBS := $(VENV)/typing-stubs

.PHONY: test lint typecheck demo install clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PIP) install --quiet $(TORCH_PIN)
	$(PIP) install --quiet -e '.[test]'
	$(PY) tools/tensorrt_stubs.py $(STUBS)
	touch $(STAMP)

install: $(STAMP)

LINT_PATHS := ideogram_trt tests $(wildcard tools)

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

# The stages that run on serving machines, strictly, with the TensorRT adapter checked against the datacenter API.
typecheck: $(STAMP)
	MYPYPATH=$(STUBS) $(VENV)/bin/mypy ideogram_trt/core ideogram_trt/engines

# Two xdist workers; tests that share an expensive export share a test class, which --dist loadscope keeps on
# one worker.
test: $(STAMP) lint typecheck
	$(PY) -m pytest -q -n 2 --dist loadscope

# Later issues make this the whole job: tiny checkpoint -> export -> engines -> image.
demo: $(STAMP)
	$(VENV)/bin/ideogram-trt make-tiny demo-out/tiny-checkpoint --seed 0 --overwrite

clean:
	rm -rf $(VENV) demo-out .pytest_cache .ruff_cache .mypy_cache
