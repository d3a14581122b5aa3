# govgym: the two front-door commands. Each creates or updates ./.venv by itself.
#   make demo   run the main job on the embedded default
#   make test   the fast CPU test suite (slow/gpu tiers: make test-slow, make test-gpu)
#   make lint   ruff check + ruff format --check (make format rewrites the files)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.govgym-installed
# CPU torch is installed explicitly first where there is no GPU: an unpinned torch pulls a multi-GB
# CUDA build. 2.13.0 is the CPU wheel this project is tested with, from the package index pip is
# configured with (no other index is named here); where it cannot be installed, make says what to do.
TORCH_CPU ?= torch==2.13.0

.PHONY: demo test test-slow test-gpu bench lint format clean-venv

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@if $(PY) -c "import torch" 2>/dev/null; then echo "torch already installed"; \
	elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then $(PY) -m pip install -q torch; \
	elif ! $(PY) -m pip install -q "$(TORCH_CPU)"; then \
	  echo "make: could not install $(TORCH_CPU) (the CPU wheel govgym is tested with) from pip's configured index: install a CPU build of torch into $(VENV) yourself (e.g. $(PY) -m pip install /path/to/torch-*.whl), then re-run make." >&2; \
	  exit 1; fi
	$(PY) -m pip install -q -e ".[rl,dev,ray,dataset,offline,trl]"
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/govgym demo

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

test-gpu: $(STAMP)
	$(PY) -m pytest -q -m gpu

bench: $(STAMP)
	$(PY) benchmarks/step_loop.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .

clean-venv:
	rm -rf $(VENV)
