# Two commands on a fresh machine (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ember-installed

.PHONY: install demo test bench clean protos

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip 'setuptools>=77.0.3,<81' wheel
	$(PY) -m pip install --no-build-isolation -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m emberd.demo

test: $(STAMP)
	$(PY) -m pytest -ra -v tests

bench: $(STAMP)
	$(PY) bench/train_throughput.py
	$(PY) bench/budget_curve.py

clean:
	rm -rf $(VENV) build *.egg-info

protos: $(STAMP)
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=clients/python --grpc_python_out=clients/python --pyi_out=clients/python protos/ember/v1/*.proto
