# Every target creates .venv/ on first use, so `.venv/bin/medcorpus` is the CLI after any target.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MEDCORPUS := $(BIN)/medcorpus
# --workers for the builds; unset, each command uses its own default: the number of cores
WORKERS ?=
WORKERS_ARG := $(if $(WORKERS),--workers $(WORKERS))
SOURCE ?=
REPO ?=

.PHONY: demo build-corpus fetch refresh publish test lint bench lock-deps clean

# Pinned versions of every dependency (constraints.txt), so two installs get the same libraries.
$(BIN)/medcorpus: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

## Refresh constraints.txt: resolve pyproject.toml's dependencies (all extras) afresh in a clean venv.
lock-deps:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet --upgrade pip
	.venv-lock/bin/pip install --quiet -e '.[dev,bench]'
	( echo "# pip constraints for MedCorpus: \`make lock-deps\` regenerates this file from pyproject.toml"; \
	  .venv-lock/bin/pip freeze --exclude-editable ) > constraints.txt
	rm -rf .venv-lock

## The whole flow offline, from the bundled sample mirror, into out/demo/.
demo: $(MEDCORPUS)
	$(MEDCORPUS) build --mirror examples/mirror --out out/demo $(WORKERS_ARG)
	$(MEDCORPUS) validate out/demo

## The real build: fetch every enabled source from its host, then build out/.
## With no dataset host reachable it reads the download cache, and takes only the sources missing from it
## from the bundled sample mirror, and says so (it never replaces a real corpus in out/ with samples).
## Publishable profile: sources whose terms forbid redistribution are left out (listed in the card), so
## `make publish` accepts the output; for private use run `medcorpus build` (profile `all`) yourself.
build-corpus: $(MEDCORPUS)
	$(MEDCORPUS) build --offline-mirror examples/mirror $(WORKERS_ARG) --license-profile publishable
	$(MEDCORPUS) validate out

fetch: $(MEDCORPUS)
	$(MEDCORPUS) fetch

refresh: $(MEDCORPUS)
	@test -n "$(SOURCE)" || (echo "usage: make refresh SOURCE=<id>" >&2; exit 2)
	$(MEDCORPUS) refresh $(SOURCE)

publish: $(MEDCORPUS)
	@test -n "$(REPO)" || (echo "usage: make publish REPO=<org/name>" >&2; exit 2)
	$(MEDCORPUS) publish out --repo $(REPO)

## Tests run with the optional Ray extra too (tests/test_engine_ray.py: Ray and local give the same bytes).
$(VENV)/.ray-extra: $(MEDCORPUS)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,ray]'
	touch $@

test: $(MEDCORPUS) $(VENV)/.ray-extra
	$(BIN)/python -m pytest

lint: $(MEDCORPUS)
	$(BIN)/ruff check etl tests bench

bench: $(MEDCORPUS) $(VENV)/.ray-extra
	$(BIN)/pip install --quiet -c constraints.txt -e '.[bench]'
	$(BIN)/python -m bench.run

clean:
	rm -rf out/demo out/.work
