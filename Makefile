# Quick start: `make demo` (train, evaluate and inpaint on the shipped demo data) and `make test`.
# Both create .venv and install the project with PyTorch pinned (constraints.txt) first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint install clean gpu-check

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ctsdg demo

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check ctsdg tests
	$(BIN)/ruff format --check ctsdg tests

# On a machine with a CUDA GPU: the CUDA test module, then the CUDA benchmarks as Markdown rows
# for docs/benchmarks.md (the JSON lines are kept in gpu-check.jsonl).
GPU_PATHS := eager:fp32,compiled:fp32,onnxruntime:fp32,eager:bf16,compiled:bf16,eager:fp16,compiled:fp16
gpu-check: $(STAMP)
	$(BIN)/python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu-check: no CUDA device')"
	$(BIN)/python -m pytest -q -rs tests/test_cuda.py
	rm -f gpu-check.jsonl
	$(BIN)/ctsdg bench model --device cuda --reference --paths $(GPU_PATHS) --json >> gpu-check.jsonl
	for p in fp32 bf16 fp16; do \
		$(BIN)/ctsdg bench train --device cuda --batch-size 6 --precision $$p --json >> gpu-check.jsonl || exit 1; \
	done
	$(BIN)/ctsdg bench train --device cuda --batch-size 6 --precision bf16 --channels-last --compile --json >> gpu-check.jsonl
	$(BIN)/ctsdg bench infer --device cuda --json >> gpu-check.jsonl
	$(BIN)/python -m ctsdg.benchmarks.table < gpu-check.jsonl

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
