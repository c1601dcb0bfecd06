# Two commands on a fresh machine (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ember-installed

DETECTION := $(VENV)/.ember-detection

.PHONY: install install-detection demo test bench clean protos lint-protos breaking-protos

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip 'setuptools>=77.0.3,<81' wheel
	# torch first: the C++/CUDA ops build against it (--no-build-isolation, see ENVIRONMENT.md)
	$(PY) -m pip install torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --no-build-isolation -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The detection extra (mmcv with its compiled ops, mmdet, mmengine, pycocotools): the shared
# prebuilt mmcv wheel when present, else one built on this machine earlier, else a build
# from PyPI's source (about 36 minutes on 2 cores, cached in ~/.cache/ember/wheels).
$(DETECTION): $(STAMP) scripts/install_detection.sh
	scripts/install_detection.sh $(PY)
	touch $@

install-detection: $(DETECTION)

demo: $(STAMP)
	$(PY) -m emberd.demo

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

test: $(STAMP) $(DETECTION) node_modules/.ember-installed lint-protos breaking-protos
	$(PY) -m pytest -ra -v tests

bench: $(STAMP)
	$(PY) bench/train_throughput.py
	$(PY) bench/continued_fit.py
	$(PY) bench/budget_curve.py
	$(PY) bench/job_start.py
	$(PY) bench/daemon_latency.py
	$(PY) bench/ddp_throughput.py
	$(PY) bench/onnx_latency.py
	$(PY) bench/kernel_ops.py

clean:
	rm -rf $(VENV) build *.egg-info

protos: $(STAMP)
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=clients/python --grpc_python_out=clients/python --pyi_out=clients/python protos/ember/v1/*.proto
