# Set-up and everyday commands. `make demo` and `make test` work on a fresh clone.
# torch is pinned here (not in pyproject) so that `pip install .` also works on machines with
# another torch; on these machines `torch==2.13.0` resolves to a local CPU wheel.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  ?= torch==2.13.0
DEMO   := out/demo

.PHONY: install demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check $(TORCH)
	$(PIP) install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/pvd info checkpoints/hashgrid-texture.safetensors
	$(VENV)/bin/pvd scenes make texture $(DEMO)/texture --size 64 --overwrite
	$(VENV)/bin/pvd eval checkpoints/hashgrid-texture.safetensors --data $(DEMO)/texture --device cpu
	$(VENV)/bin/pvd render checkpoints/hashgrid-texture.safetensors --out $(DEMO)/turntable.gif --frames 24 --device cpu

test: install
	$(VENV)/bin/pytest -q

lint: install
	$(VENV)/bin/ruff check pvd architectures tests benchmarks

bench: install
	$(VENV)/bin/python benchmarks/teachers.py

clean:
	rm -rf out .pytest_cache
