# Two commands on a fresh machine (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ember-installed

DETECTION := $(VENV)/.ember-detection

.PHONY: install install-detection demo test test-fast bench clean protos lint lint-protos breaking-protos lint-imports

# Three distributions, installed editable: the ops (kernels/), the client (clients/python/) and
# the daemon (here), which depends on both; one version, in VERSION.
$(STAMP): pyproject.toml clients/python/pyproject.toml kernels/pyproject.toml kernels/setup.py VERSION
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip 'setuptools>=77.0.3,<81' wheel
	# torch first: the C++/CUDA ops build against the venv's torch (--no-build-isolation spares
	# a second download of torch and its CUDA stack into a build environment; see ENVIRONMENT.md)
	$(PY) -m pip install torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip uninstall -y ember  # the one distribution this project was before the split, if present
	$(PY) -m pip install --no-build-isolation -e ./kernels -e './clients/python[onnx]' -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The detection extra (mmcv with its compiled ops, mmdet, mmengine, pycocotools): the shared
# prebuilt mmcv wheel when present, else one built on this machine earlier, else a build
# from PyPI's source (about 36 minutes on 2 cores, cached in ~/.cache/ember/wheels).
$(DETECTION): $(STAMP) scripts/install_detection.sh
	scripts/install_detection.sh $(PY)
	touch $@

install-detection: $(DETECTION)

# the demo and the data readers the tests and benchmarks share live in examples/ember_examples
# (not shipped with the daemon)
EXAMPLES := PYTHONPATH=examples

demo: $(STAMP)
	$(EXAMPLES) $(PY) -m ember_examples.demo

# buf, and the Node client's packages (clients/node is a workspace of the root package.json)
node_modules/.ember-installed: package.json package-lock.json clients/node/package.json
	npm ci --no-audit --no-fund
	touch $@

# buf's STANDARD lint rules over the API's source of truth (protos/buf.yaml)
lint-protos: node_modules/.ember-installed
	cd protos && ../node_modules/.bin/buf lint

# buf breaking: protos/ stays compatible with the previous commit's (README, "The API");
# skipped, saying why, without git history. A branch: make breaking-protos BUF_AGAINST=main
BUF_AGAINST ?= HEAD~1
breaking-protos: node_modules/.ember-installed
	.ci/buf-breaking.sh $(BUF_AGAINST)

# which way imports may go (pyproject.toml, [tool.importlinter]): the engine without gRPC or the
# client's RPC code, the client without the daemon or torch
lint-imports: $(STAMP)
	$(VENV)/bin/lint-imports

# every tier (tests/unit, tests/service, tests/e2e), slow tests included (about 30 minutes on 2 cores)
# ruff over the tree but the generated stubs (pyproject.toml, [tool.ruff])
lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: $(STAMP) $(DETECTION) node_modules/.ember-installed lint lint-protos breaking-protos lint-imports
	$(PY) -m pytest -ra -v tests

# the edit-run loop: tests/unit alone (no daemon, no training; under a minute on 2 cores)
test-fast: $(STAMP)
	$(PY) -m pytest -q tests/unit

bench: $(STAMP)
	$(EXAMPLES) $(PY) bench/train_throughput.py
	$(EXAMPLES) $(PY) bench/continued_fit.py
	$(EXAMPLES) $(PY) bench/budget_curve.py
	$(EXAMPLES) $(PY) bench/job_start.py
	$(EXAMPLES) $(PY) bench/job_start.py --model minilm
	$(EXAMPLES) $(PY) bench/daemon_latency.py
	$(EXAMPLES) $(PY) bench/ddp_throughput.py
	$(EXAMPLES) $(PY) bench/onnx_latency.py
	$(EXAMPLES) $(PY) bench/kernel_ops.py
	$(EXAMPLES) $(PY) bench/several_daemons.py

clean:
	rm -rf $(VENV) build *.egg-info kernels/build kernels/*.egg-info clients/python/build clients/python/*.egg-info

protos: $(STAMP)
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=clients/python --grpc_python_out=clients/python --pyi_out=clients/python protos/ember/v1/*.proto
