# The README's two commands: `make run` and `make test`. Each installs first.
SHELL := /bin/bash
PYTHON ?= python3
# uv from PATH if present, else as a module of the interpreter that has it.
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := $(PYTHON) -m uv
endif
HOST ?= 127.0.0.1
PORT ?= 3000

export RAY_AUTH_MODE := disabled
export RAY_USAGE_STATS_ENABLED := 0
export DAGSTER_HOME ?= $(CURDIR)/.quantos/dagster_home
export PYTHONWARNINGS := ignore::DeprecationWarning
# Every step worker and code-location load imports Dagster afresh; without
# cached bytecode each import recompiles ~1,000 modules (seconds per process).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install run test test-ray test-ray-faults demo bench lint fuzz docs clean

install:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --frozen --compile-bytecode
	@# dbt_project/target/manifest.json, parsed once here, not at every code-location load.
	$(UV) run --frozen python -m quantos_assets.dbt_models
	@mkdir -p "$(DAGSTER_HOME)"
	@test -f "$(DAGSTER_HOME)/dagster.yaml" || cp deploy/dagster.local.yaml "$(DAGSTER_HOME)/dagster.yaml"
	@# Debian Chromium for the browser tests (tests/e2e/test_browser_ui.py); non-fatal: those
	@# tests then fail saying it is missing, the rest of the install still works.
	@command -v chromium >/dev/null 2>&1 || { echo "installing chromium (browser E2E tests)"; \
	  mkdir -p .quantos; { command -v apt-get >/dev/null 2>&1 && (apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    chromium fonts-liberation) >.quantos/chromium-install.log 2>&1; } || \
	  echo "WARNING: could not install chromium with apt-get (see .quantos/chromium-install.log);" \
	    "the browser E2E tests will fail until /usr/bin/chromium exists" >&2; }

## Serve the platform on the embedded default: UI + daemon on http://$(HOST):$(PORT)
# The URL is printed first because `quantos logs` and the gateway in other terminals need it
# (QUANTOS_DAGSTER_URL). Dagster's advice to use `dg dev` (SupersessionWarning) is silenced:
# `dg` is not installed here, and `dagster dev` is what this platform is tested with. Each
# location of workspace.yaml gets an in-place code server first (a registry change rebuilds
# it without a new process: quantos_assets/apps/code_server/local_stack.py).
run: install
	@echo "Dagster UI and GraphQL: http://$(HOST):$(PORT)   (other terminals: export QUANTOS_DAGSTER_URL=http://$(HOST):$(PORT))"
	PYTHONWARNINGS='$(PYTHONWARNINGS),ignore:Function `dev_command` is superseded' \
	  $(UV) run python -m quantos_assets.apps.code_server.local_stack -w workspace.yaml -h $(HOST) -p $(PORT)

# mypy over the [tool.mypy] files of pyproject.toml. Its incremental cache can crash on
# namespace packages (python/mypy#16214): after a crash (exit 2) check again from an empty one.
MYPY = $(UV) run mypy || { rc=$$?; [ $$rc -eq 2 ] || exit $$rc; \
  echo "mypy crashed (exit 2): again without its cache" >&2; rm -rf .mypy_cache; $(UV) run mypy; }

## The whole suite
# Lint and format check, the import layers (pyproject.toml [tool.importlinter]) and types first
# (ruff: seconds; mypy: ~10 s with its cache, ~45 s in a fresh clone), then the suite on both
# cores: one test file per worker, so a module's dagster dev / broker / database fixture is
# started once. Files go out in collection order (e2e, then integration, then unit: heaviest
# first), not xdist's default of most tests first, which left the few-test e2e files holding
# one core for minutes at the end.
test: install
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run lint-imports
	$(MYPY)
	$(UV) run pytest -q -p no:cacheprovider -n 2 --dist loadfile --no-loadscope-reorder --durations=15 -m "not ray_faults and not ray_cluster"

## The ML half's longer runs on a two-node Ray cluster on loopback: a node and a driver killed
## mid-training, a 4-trial search, the seed example, the gate's retrain (~12 min on 2 cores:
## more than the whole suite's budget, so kept out of `make test`).
test-ray: install
	$(UV) run pytest -q -p no:cacheprovider -m "ray_faults or ray_cluster" tests/integration/
test-ray-faults: test-ray

## The example pipeline end to end, headless
demo: install
	$(UV) run quantos validate specs/
	$(UV) run quantos run specs/xs_momentum_backtest.yaml

## Benchmarks (not tests): each prints ratio= last
bench: install
	for b in bench/*.py; do echo "== $$b"; $(UV) run python $$b || exit 1; done

lint: install
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run lint-imports
	$(MYPY)

## The generated references in docs/ (spec schema and tables, OpenAPI + REST, Python client, CLI);
## tests/unit/test_docs_generated.py fails when they are stale
docs: install
	$(UV) run python docs/generate.py

## Fuzz the spec loader for FUZZ_MINUTES (default 10): hypothesis, no traceback or hang allowed
FUZZ_MINUTES ?= 10
fuzz: install
	HYPOTHESIS_PROFILE=fuzz QUANTOS_FUZZ_SECONDS=$$(( $(FUZZ_MINUTES) * 60 )) \
	  $(UV) run pytest -q -p no:cacheprovider tests/unit/test_spec_loader_fuzz.py

clean:
	rm -rf .quantos
