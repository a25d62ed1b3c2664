# Every target creates .venv/ on first use, so `.venv/bin/medcorpus` is the CLI after any target.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MEDCORPUS := $(BIN)/medcorpus
WORKERS ?= 2
SOURCE ?=
REPO ?=

.PHONY: demo build-corpus fetch refresh publish test lint bench clean

$(BIN)/medcorpus: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## The whole flow offline, from the bundled sample mirror, into out/demo/.
demo: $(MEDCORPUS)
	$(MEDCORPUS) build --mirror examples/mirror --out out/demo --workers $(WORKERS)
	$(MEDCORPUS) validate out/demo

## The real build: fetch every enabled source from its host, then build out/.
## With no dataset host reachable it builds from the bundled sample mirror instead, and says so.
build-corpus: $(MEDCORPUS)
	$(MEDCORPUS) build --offline-mirror examples/mirror --workers $(WORKERS)
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
	$(BIN)/pip install --quiet -e '.[dev,ray]'
	touch $@

test: $(MEDCORPUS) $(VENV)/.ray-extra
	$(BIN)/python -m pytest

lint: $(MEDCORPUS)
	$(BIN)/ruff check etl tests bench

bench: $(MEDCORPUS) $(VENV)/.ray-extra
	$(BIN)/python -m bench.run

clean:
	rm -rf out/demo out/.work
