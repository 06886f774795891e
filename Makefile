# forensic-checkpoint developer entry points. `make setup` is idempotent; every other target
# depends on it, so a fresh clone needs only `make demo` or `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
TOOLS_DIR ?= $(HOME)/.cache/forensic-checkpoint

.PHONY: setup test test-fast lint bench demo cluster-tools crds clean

setup: $(VENV)/.setup-done
$(VENV)/.setup-done: pyproject.toml scripts/setup-venv.sh
	VENV=$(VENV) bash scripts/setup-venv.sh
	touch $@

lint: setup
	$(VENV)/bin/ruff check operator/src tests benchmarks
	$(VENV)/bin/ruff format --check operator/src tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) -m benchmarks.run

demo: setup
	$(VENV)/bin/forensic-checkpoint analyze tests/data/counter-blog-crio.tar.zst --search 'secret' 

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
