# Every target sets itself up: a fresh machine needs only python3.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: serve test bench bench-service bench-attack lint proto soak clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/paramstore serve --address 127.0.0.1:50051 --data-dir ./paramstore-data

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

soak: $(STAMP)
	$(PY) -m pytest -q -m slow

# PyTorch is never a dependency: `make bench TORCH_VENV=/path/to/venv` borrows it for the LeNet baseline.
bench: $(STAMP)
	$(PY) bench/engine.py $(if $(TORCH_VENV),--torch-venv $(TORCH_VENV))

bench-service: $(STAMP)
	$(PY) bench/service.py

bench-attack: $(STAMP)
	$(PY) bench/attack.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

proto: $(STAMP)
	$(PY) -m grpc_tools.protoc -Iproto --python_out=proto --pyi_out=proto --grpc_python_out=proto proto/paramstore/proto/v1/paramstore.proto

clean:
	rm -rf $(VENV) build *.egg-info
