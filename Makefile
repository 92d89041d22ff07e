# orion: the two commands a new user types are `make run` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
DATA    := data
PORT    ?= 8000

.PHONY: run test check bench drill soak setup setup-dev system clean

run: setup  ## set up, migrate, serve the example app at http://127.0.0.1:$(PORT)
	mkdir -p $(DATA)
	ORION_ENV=$${ORION_ENV:-development} ORION_DB=$${ORION_DB:-$(DATA)/app.sqlite} ORION_DEMO=$${ORION_DEMO:-1} \
	  $(BIN)/gunicorn -c gunicorn.conf.py --bind 127.0.0.1:$(PORT) wsgi:app

test: setup-dev system  ## set up everything the suite needs, then run the whole suite
	$(BIN)/python -m pytest

check: setup-dev  ## lint, types and tests
	$(BIN)/ruff check app tests bench scripts deploy
	$(BIN)/mypy app/belt
	$(BIN)/python -m pytest

bench: setup-dev  ## benchmarks; results land in bench/RESULTS.md (never part of make test)
	$(BIN)/python -m bench.run $(BENCH_ARGS)  # e.g. BENCH_ARGS=--quick; see bench/README.md

# The benchmark peers' pinned dependencies (bench/peers/), kept out of the app's venv.
.cache/peers/.installed: bench/requirements-peers.txt | $(VENV)/bin/python
	rm -rf .cache/peers
	$(BIN)/pip install --quiet --target .cache/peers -r bench/requirements-peers.txt
	touch $@

drill: setup-dev  ## the Litestream restore drill: back up under load, restore, verify (deploy/drill.py)
	$(BIN)/python -m deploy.drill $(DRILL_ARGS)  # e.g. DRILL_ARGS="--rows 20000 --rate 1000"

soak: setup-dev system  ## the soak and fault suite (<= 25 min); figures in RELIABILITY.md
	$(BIN)/python -m soak.run $(SOAK_ARGS)  # e.g. SOAK_ARGS=--quick or SOAK_ARGS="--only kill9"

setup: $(VENV)/.runtime app/static/datastar.js

setup-dev: setup $(VENV)/.dev .cache/otlp/.installed .cache/peers/.installed

# The OTLP recipe's SDK, kept out of the app's venv (it is the recipe's dependency):
# tests/recipes/test_otlp.py ships real traces through it.
.cache/otlp/.installed: requirements-otlp.txt | $(VENV)/bin/python
	rm -rf .cache/otlp
	$(BIN)/pip install --quiet --target .cache/otlp -r requirements-otlp.txt
	touch $@

$(VENV)/bin/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(VENV)/bin/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt requirements.txt | $(VENV)/bin/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

app/static/datastar.js: scripts/install_datastar.py | $(VENV)/bin/python
	$(BIN)/python scripts/install_datastar.py

# System packages the browser tests need (Debian). Installs only what is missing, as root.
system:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: run 'sudo apt-get install -y chromium' (the browser tests drive /usr/bin/chromium)"; exit 1; fi; }
# ...and what the deploy tests run for real: Redis (rung 2), nginx (the proxy), systemd-analyze, curl, openssl.
	@missing=""; \
	for pair in redis-server:redis-server nginx:nginx systemd-analyze:systemd curl:curl openssl:openssl; do \
	  tool=$${pair%%:*}; command -v $$tool >/dev/null 2>&1 || [ -x /usr/sbin/$$tool ] || missing="$$missing $${pair##*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing:$$missing: run 'sudo apt-get install -y$$missing' (tests/deploy runs them for real)"; exit 1; fi; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .cache
