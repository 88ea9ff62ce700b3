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
# The serving environment the Triton tests run the server in: Triton 2.51 (nvidia-pytriton), the runtime extras
# only (no PyTorch), and numpy < 2, which the Python-backend stub needs.
TRITON_VENV := .venv-triton
TRITON_STAMP := $(TRITON_VENV)/.installed

.PHONY: test lint typecheck demo install clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PIP) install --quiet $(TORCH_PIN)
	$(PIP) install --quiet -e '.[test]'
	$(PY) tools/tensorrt_stubs.py $(STUBS)
	touch $(STAMP)

$(TRITON_STAMP): pyproject.toml
	$(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TRITON_VENV)/bin/python -m pip install --quiet 'nvidia-pytriton==0.7.0' 'numpy<2' -e '.[runtime]'
	touch $(TRITON_STAMP)

install: $(STAMP) $(TRITON_STAMP)

LINT_PATHS := ideogram_trt tests $(wildcard tools)

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

# The stages that run on serving machines, strictly, with the TensorRT adapter checked against the datacenter API.
typecheck: $(STAMP)
	MYPYPATH=$(STUBS) $(VENV)/bin/mypy ideogram_trt/core ideogram_trt/engines ideogram_trt/runtime \
		ideogram_trt/verify ideogram_trt/model/tiny.py ideogram_trt/model/safetensors_stream.py

# Two xdist workers; tests that share an expensive export share a test class, which --dist loadscope keeps on
# one worker.
test: $(STAMP) $(TRITON_STAMP) lint typecheck
	$(PY) -m pytest -q -n 2 --dist loadscope

# The whole job on the trained tiny checkpoint (checkpoints/tiny-shapes, docs/TINY_MODEL.md; real weights cannot be
# downloaded here), on the CPU: calibration -> fp8 export (fp32 graphs) -> ONNX Runtime engine set -> image.
# The README's picture (docs/images/demo.png) is this target's output.
DEMO := demo-out
TINY := checkpoints/tiny-shapes
DEMO_PROMPT := {"subject":"a large orange triangle","position":"center","background":"light blue"}
demo: $(STAMP)
	$(VENV)/bin/ideogram-trt calibrate --model $(TINY) --out $(DEMO)/calibration.json --prompts $(TINY)/calibration_prompts.jsonl \
		--resolution 256x256 --preset V4_DEFAULT_20 --limit 4 --overwrite
	$(VENV)/bin/ideogram-trt build-engines --model $(TINY) --out $(DEMO)/engines \
		--recipe fp8 --calibration $(DEMO)/calibration.json --flavor onnxruntime --buckets 256x256
	$(VENV)/bin/ideogram-trt generate '$(DEMO_PROMPT)' \
		--engines $(DEMO)/engines --bucket 256x256 --preset V4_FAST_20 --seed 0 -o $(DEMO)/shapes.png
	@echo "demo image: $(CURDIR)/$(DEMO)/shapes.png"

clean:
	rm -rf $(VENV) $(TRITON_VENV) demo-out .pytest_cache .ruff_cache .mypy_cache
