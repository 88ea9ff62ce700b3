# `make test` works from a fresh clone: it creates .venv, installs the pinned CPU torch wheel first
# (any other torch spec would pull several GB of CUDA wheels), then the project with its test extras.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
TORCH_PIN := torch==2.13.0

.PHONY: test lint demo install clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PIP) install --quiet $(TORCH_PIN)
	$(PIP) install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

LINT_PATHS := ideogram_trt tests $(wildcard tools)

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

test: $(STAMP) lint
	$(PY) -m pytest -q -n 2 --dist loadscope

# Later issues make this the whole job: tiny checkpoint -> export -> engines -> image.
demo: $(STAMP)
	$(VENV)/bin/ideogram-trt make-tiny demo-out/tiny-checkpoint --seed 0 --overwrite

clean:
	rm -rf $(VENV) demo-out .pytest_cache .ruff_cache .mypy_cache
