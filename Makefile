# One-command entry points. `make demo` runs the main job, `make test` runs the tests.
# Both create the virtual environment on first use.

VENV   ?= .venv
PYTHON ?= python3
# The torch build to install when none is present. 2.13.0 is the tested version; override
# (e.g. TORCH="torch==2.13.0 --index-url ...") for a specific CUDA build.
TORCH  ?= torch==2.13.0
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv test lint demo clean

venv: $(STAMP)

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[test,onnx]"
	touch $(STAMP)

test: venv
	$(PY) -m pytest test

lint: venv
	$(VENV)/bin/ruff check sfm_ros test benchmarks launch setup.py
	$(VENV)/bin/ruff format --check sfm_ros test benchmarks launch setup.py

demo: venv
	$(VENV)/bin/sfm-ros demo --out out/demo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
