# Two commands for a fresh machine:  make run  (service with demo data)  and  make test.
SHELL := /bin/bash
export DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/ansim
export REDIS_URL ?= redis://127.0.0.1:6379/0
TEST_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/ansim_test
TEST_REDIS_URL ?= redis://127.0.0.1:6379/9
VENV := .venv/bin

.PHONY: setup run test lint format typecheck bench bench-assets image-smoke clean fuzz-receiver

setup:                ## install PostgreSQL/PostGIS/Redis if missing, create .venv
	scripts/setup.sh

run: setup            ## migrate, seed the demo city, serve on http://127.0.0.1:8000
	scripts/ensure_db.sh $(DATABASE_URL)
	$(VENV)/ansim db upgrade
	$(VENV)/ansim demo
	$(VENV)/ansim serve --dispatchers 1

test:                 ## everything the tests need, then the whole suite
	scripts/setup.sh --browser
	scripts/ensure_db.sh $(TEST_DATABASE_URL)
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) ANSIM_ENVIRONMENT=test \
	  $(VENV)/pytest -q $(PYTEST_ARGS)

fuzz-receiver:        ## the DC-09 frame fuzz with 100,000 inputs (make test runs 5,000)
	scripts/ensure_db.sh $(TEST_DATABASE_URL)
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) ANSIM_ENVIRONMENT=test \
	  ANSIM_FUZZ_EXAMPLES=100000 $(VENV)/pytest -q -s -o timeout=3600 --durations=5 \
	  tests/receiver/test_fuzz.py $(PYTEST_ARGS)

lint:                 ## ruff + mypy
	$(VENV)/ruff format --check .
	$(VENV)/ruff check .
	$(VENV)/mypy app loadtests

format:
	$(VENV)/ruff format .
	$(VENV)/ruff check --fix .

bench: setup          ## load benchmark beside the ceiling (see docs/performance.md)
	$(VENV)/python -m loadtests.bench $(BENCH_ARGS)

bench-assets: setup   ## CCTV/bell lookup p99 at 40,000 assets, and the SOS intake beside it
	$(VENV)/python -m loadtests.assets_bench $(BENCH_ARGS)

image-smoke:          ## build the image (base from debootstrap) and run an SOS through it (root; minutes)
	scripts/image-smoke.sh

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache artifacts
