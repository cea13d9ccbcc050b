# Two commands for a fresh clone: `make demo` and `make test`. Both create/reuse .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q --disable-pip-version-check

.PHONY: demo test setup

setup: $(VENV)/.xtui-installed

$(VENV)/.xtui-installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.14.1 torchvision==0.29.1
	$(PIP) -e '.[test]'
	# xtuner 0.2.0 pins bitsandbytes 0.45.0, which fails beside triton 3.8 and breaks LoRA (see README)
	$(PIP) --no-deps bitsandbytes==0.45.5
	touch $@

demo: setup
	$(VENV)/bin/xtui demo

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q
