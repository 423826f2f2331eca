# `make demo` and `make test` work on a fresh machine: they create .venv when it is
# missing and install the project with every extra from pyproject.toml.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml tests/third_party_backend/pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e ".[all,dev]"
	# An out-of-tree backend the conformance suite proves through its entry point alone.
	$(VENV)/bin/python -m pip install --quiet --no-deps -e tests/third_party_backend
	# Debian's chromium for the browser tests of `bridge ui` (tests/ui skip without it).
	test -x /usr/bin/chromium || ! command -v apt-get >/dev/null || \
		(export DEBIAN_FRONTEND=noninteractive; apt-get install -y -qq chromium || (apt-get update -qq && apt-get install -y -qq chromium)) \
		|| echo "chromium not installed: the browser tests of tests/ui will be skipped"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/bridge demo

# pytest exits 5 when it collected no test: that is a failure here, not a pass.
test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider --durations=30; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest ran no test: failing"; exit 1; fi; exit $$rc

lint: $(STAMP)
	$(VENV)/bin/ruff check bridge backends adapters examples tests bench
	$(VENV)/bin/ruff format --check bridge backends adapters examples tests bench

bench: $(STAMP)
	$(VENV)/bin/python -m bench.run

clean:
	rm -rf $(VENV) .bridge
