# Two commands on a fresh machine: `make demo` (install + the embedded demo) and `make test` (install + tests).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install test test-all lint demo clean

$(STAMP): pyproject.toml constraints/cpu.txt
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints/cpu.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints/cpu.txt -e ".[train,dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m "not gpu and not docker"

lint: $(STAMP)
	$(BIN)/ruff check submission trainer build tests
	$(BIN)/hadolint Dockerfile Dockerfile.train

demo: $(STAMP)
	$(BIN)/python build/demo.py --out demo_out

clean:
	rm -rf $(VENV) runs dist demo_out .pytest_cache
