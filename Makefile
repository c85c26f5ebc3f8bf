# The two commands of the README's Quick start (demo, test), what they need, and the
# quick loop: `make unit` runs tests/unit alone (pure logic, seconds, no xdist).
VENV ?= .venv
PYTHON ?= python3

.PHONY: demo test unit lint bench bench-deps deps

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

# The lint extra (ruff, mypy, stubs) on top of the base install.
$(VENV)/.lint-installed: $(VENV)/.installed pyproject.toml
	$(VENV)/bin/pip install -q -e '.[test,lint]'
	touch $@

# Graphviz renders ?graph&format=svg|png; the tests check real `dot` output. Chromium and
# its driver run the web console in a real headless browser (tests/cluster/test_console.py).
deps: $(VENV)/.installed
	@{ command -v dot && test -x /usr/bin/chromium && test -x /usr/bin/chromedriver; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq graphviz chromium chromium-driver >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq graphviz chromium chromium-driver >/dev/null; fi; }

demo: $(VENV)/.installed
	$(VENV)/bin/tuggle-agent dev --nodes 3

# Everything: tests/unit, tests/cluster and tests/devconsul (pyproject's testpaths).
test: deps
	$(VENV)/bin/pytest -n 2 --dist loadfile

unit: $(VENV)/.installed
	$(VENV)/bin/pytest tests/unit -q

# ruff (lint rules and formatting) and mypy, as configured in pyproject.toml.
lint: $(VENV)/.lint-installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# nginx and curl: the reference server and the client of core_bench and relay_cost.
bench-deps: deps
	@{ command -v nginx || test -x /usr/sbin/nginx; } >/dev/null 2>&1 && command -v curl >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq nginx curl >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq nginx curl >/dev/null; fi; }

# Figures for the README (several minutes).
bench: bench-deps
	$(VENV)/bin/python bench/devconsul_bench.py
	$(VENV)/bin/python bench/distribute.py --handler http
	$(VENV)/bin/python bench/distribute.py --handler http --hetero
	$(VENV)/bin/python bench/core_bench.py
	$(VENV)/bin/python bench/relay_cost.py
	$(VENV)/bin/python bench/front_bench.py
	$(VENV)/bin/python bench/consul_load.py
