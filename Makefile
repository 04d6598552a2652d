# The README's commands. `make run` and `make test` create .venv with Python 3.10 when it is
# missing and install the pinned TFX 1.16 stack (constraints.txt) before doing their work.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= default
PYTEST_ARGS ?=
export TF_USE_LEGACY_KERAS := 1
# TensorFlow C++ warnings (CUDA probes, end-of-sequence notices) are noise on a CPU machine.
export TF_CPP_MIN_LOG_LEVEL ?= 2

# python3.10 on PATH, else pyenv's, else a clear message.
PYTHON310 := $(shell command -v python3.10 >/dev/null 2>&1 && python3.10 -c 'import sys' >/dev/null 2>&1 \
	&& echo python3.10 || ls -d $$HOME/.pyenv/versions/3.10.*/bin/python3.10 2>/dev/null | tail -n 1)

.PHONY: run test test-e2e setup clean kfp
run: $(VENV)/.installed
	$(PY) -m pipeline.run --profile $(PROFILE)

# Two tiers (pytest.ini's markers): `test` leaves out whole-pipeline runs (e2e) and real
# trainings in subprocesses (slow), so it takes minutes on 2 cores (README); `test-e2e` runs
# exactly those. CI (.ci/run) runs both.
test: $(VENV)/.installed
	$(PY) -m pytest -m 'not e2e and not slow' $(PYTEST_ARGS)

test-e2e: $(VENV)/.installed
	$(PY) -m pytest -m 'e2e or slow' $(PYTEST_ARGS)

setup: $(VENV)/.installed

$(VENV)/.installed: setup.py pyproject.toml constraints.txt
	@if [ ! -x $(PY) ]; then \
	  if [ -z "$(PYTHON310)" ]; then \
	    echo "Python 3.10 is required (TFX 1.16 supports no newer Python). Install it, e.g." \
	         "'pyenv install 3.10.13' or Debian/Ubuntu's python3.10 and python3.10-venv, then re-run." >&2; \
	    exit 1; \
	  fi; \
	  echo "Creating $(VENV) with $(PYTHON310)"; \
	  $(PYTHON310) -m venv $(VENV); \
	fi
	$(PY) -m pip install --upgrade 'pip==24.2'
	$(PY) -m pip install -c constraints.txt -e '.[test]'
	touch $@

# Compiles the pipeline for Kubeflow Pipelines (docs/kubeflow.md), e.g.
#   make kfp KFP_ARGS="--image REGISTRY/quickdraw-tfx:0.1.0 --output-dir gs://BUCKET/quickdraw-tfx \
#                      --gcp-project PROJECT --region us-central1"
KFP_PROFILE ?= full
KFP_ARGS ?=
kfp: $(VENV)/.installed
	$(PY) -m kubeflow.compile_kfp --profile $(KFP_PROFILE) $(KFP_ARGS)

clean:
	rm -rf outputs
