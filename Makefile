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
	$(VENV)/bin/pvd convert checkpoints/hashgrid-texture.safetensors --to mulfagrid --preset cpu --device cpu --data $(DEMO)/texture --out $(DEMO)/mulfagrid-texture.safetensors
	$(VENV)/bin/pvd render $(DEMO)/mulfagrid-texture.safetensors --out $(DEMO)/mulfagrid-turntable.gif --frames 24 --device cpu

test: install
	$(VENV)/bin/pytest -q

lint: install
	$(VENV)/bin/ruff check pvd architectures tests benchmarks

bench: install
	$(VENV)/bin/pytest -q -m slow
	$(VENV)/bin/python benchmarks/teachers.py
	$(VENV)/bin/python benchmarks/convert.py students
	$(VENV)/bin/python benchmarks/convert.py ablation
	$(VENV)/bin/python benchmarks/convert.py speedup --size 64 --scratch-budget 300
	$(VENV)/bin/python benchmarks/convert.py speedup --size 64
	$(VENV)/bin/python benchmarks/convert.py speedup --size 128
	$(VENV)/bin/python benchmarks/convert.py speedup --size 128 --distil-steps 1200
	$(VENV)/bin/python benchmarks/convert.py matrix
	$(VENV)/bin/python benchmarks/compare.py
	OMP_NUM_THREADS=1 $(VENV)/bin/python benchmarks/gtk.py

clean:
	rm -rf out .pytest_cache
