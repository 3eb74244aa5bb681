# Quick start: `make demo` (train, evaluate and inpaint on the shipped demo data) and `make test`.
# Both create .venv and install the project with PyTorch pinned (constraints.txt) first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint install clean gpu-check

install: $(STAMP)

# pip is silent for most of a minute while it unpacks PyTorch: a line every 20 s says it is still
# at work (with output redirected, make demo never goes 30 s without a line; issue 19).
PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	@echo "installing ctsdg and its dependencies into $(VENV) (PyTorch pinned by constraints.txt; about a minute)"
	@$(PIP_INSTALL) & pid=$$!; n=0; \
	while kill -0 $$pid 2>/dev/null; do \
		sleep 1; n=$$((n + 1)); \
		if [ $$((n % 20)) -eq 0 ] && kill -0 $$pid 2>/dev/null; then echo "  still installing ($$n s)"; fi; \
	done; \
	wait $$pid
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ctsdg demo

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check ctsdg tests
	$(BIN)/ruff format --check ctsdg tests

# On a machine with a CUDA GPU: the CUDA test module, then the CUDA benchmarks as Markdown rows
# for docs/benchmarks.md (the JSON lines are kept in gpu-check.jsonl). Where PyPI cannot be
# reached but a Python with CUDA PyTorch and ctsdg's dependencies is there, skip the .venv:
#   make gpu-check GPU_PYTHON=python3
GPU_PYTHON ?= $(BIN)/python
GPU_PATHS := eager:fp32,compiled:fp32,onnxruntime:fp32,eager:bf16,compiled:bf16,eager:fp16,compiled:fp16
GPU_BENCH := $(GPU_PYTHON) -m ctsdg bench
gpu-check: $(if $(filter $(BIN)/python,$(GPU_PYTHON)),$(STAMP))
	$(GPU_PYTHON) -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu-check: no CUDA device')"
	$(GPU_PYTHON) -m pytest -q -rs tests/test_cuda.py
	rm -f gpu-check.jsonl
	$(GPU_BENCH) model --device cuda --reference --paths $(GPU_PATHS) --json >> gpu-check.jsonl
	for p in fp32 bf16 fp16; do \
		$(GPU_BENCH) train --device cuda --batch-size 6 --precision $$p --json >> gpu-check.jsonl || exit 1; \
	done
	$(GPU_BENCH) train --device cuda --batch-size 6 --precision bf16 --channels-last --compile --json >> gpu-check.jsonl
	$(GPU_BENCH) infer --device cuda --json >> gpu-check.jsonl
	$(GPU_PYTHON) -m ctsdg.benchmarks.table < gpu-check.jsonl

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache gpu-check.jsonl
