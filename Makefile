# Two commands for a fresh machine (see README):
#   make demo  - create .venv, install cvzoo, train/evaluate/predict on the bundled data
#   make test  - create/update .venv with the test extras, run lint, the import-layer contract and pytest
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch/torchvision pair that installs offline here (CUDA build; runs on the CPU too).
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: venv venv-test demo test lint contracts pytest clean

$(VENV)/.stamp-base: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q $(TORCH_PINS)
	$(PIP) install -q -e .
	touch $@

$(VENV)/.stamp-test: $(VENV)/.stamp-base pyproject.toml
	$(PIP) install -q -e '.[test]'
	touch $@

venv: $(VENV)/.stamp-base
venv-test: $(VENV)/.stamp-test

demo: venv
	$(PY) -m cvzoo.demo

lint: venv-test
	$(VENV)/bin/ruff check cvzoo tests benchmarks

contracts: venv-test
	$(VENV)/bin/lint-imports

pytest: venv-test
	$(VENV)/bin/pytest -q -p no:cacheprovider tests

test: lint contracts pytest

clean:
	rm -rf $(VENV) runs build *.egg-info
