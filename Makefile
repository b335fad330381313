# Every target sets itself up: a fresh machine needs only python3.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# `make serve ADDRESS=127.0.0.1:50061` when 50051 is taken.
ADDRESS ?= 127.0.0.1:50051

.PHONY: serve test bench bench-service bench-attack bench-cluster lint proto soak clean etcd

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/paramstore serve --address $(ADDRESS) --data-dir ./paramstore-data

test: $(STAMP) etcd
	$(PY) -m pytest -q -m "not slow" --durations=25

soak: $(STAMP) etcd
	$(PY) -m pytest -q -m slow

# The cluster tests start a real etcd: Debian's etcd-server, installed when missing (CI runs
# as root on a fresh machine; elsewhere through sudo).
etcd:
	@command -v etcd >/dev/null || { \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null; }

# PyTorch is never a dependency: `make bench TORCH_VENV=/path/to/venv` borrows it for the LeNet baseline.
bench: $(STAMP)
	$(PY) bench/engine.py $(if $(TORCH_VENV),--torch-venv $(TORCH_VENV))

bench-service: $(STAMP)
	$(PY) bench/service.py

bench-attack: $(STAMP)
	$(PY) bench/attack.py

bench-cluster: $(STAMP) etcd
	$(PY) bench/cluster.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

proto: $(STAMP)
	$(PY) -m grpc_tools.protoc -Iproto --python_out=proto --pyi_out=proto --grpc_python_out=proto proto/paramstore/proto/v1/paramstore.proto

clean:
	rm -rf $(VENV) build *.egg-info
