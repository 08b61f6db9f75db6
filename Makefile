# Two commands do all the set-up on a fresh clone:
#   make run    Azurite + the development host with the function app (prints the URLs)
#   make test   linters, type checks and the whole test suite (Azurite started by the tests)
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
SOURCES := function_app.py blueprints shared devhost devtools client bench tests
PORT ?= 7071

.PHONY: setup run test lint bench clean scan-infra lock console browser

setup: $(VENV)/.installed node_modules/.installed console

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The console's MSAL.js, from the npm registry (package.json), into the deployed folder
# (node_modules is not deployed; console/vendor/ is git-ignored and rebuilt here).
MSAL_JS := node_modules/@azure/msal-browser/lib/msal-browser.min.js
console: console/vendor/msal-browser.min.js
console/vendor/msal-browser.min.js: node_modules/.installed
	mkdir -p console/vendor
	cp $(MSAL_JS) $@

# Headless Chromium from Debian for the console's browser tests (Playwright drives it; no
# browser download). Skipped when it is there already.
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium; }

run: setup
	$(PY) -m devtools.run --port $(PORT)

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

# Coverage of shared/ (the domain): a summary of the files not wholly covered; no threshold.
# The suite starts ~50 Python processes that import the same modules: they are compiled once, even
# where the environment sets PYTHONDONTWRITEBYTECODE (this machine's does).
test: lint scan-infra browser
	env -u PYTHONDONTWRITEBYTECODE $(PY) -m compileall -q $(SOURCES) > /dev/null
	env -u PYTHONDONTWRITEBYTECODE $(PY) -m pytest --cov=shared --cov-report=term:skip-covered

# checkov in its own venv (.venv-scan); fails on any parsing error or unskipped finding.
scan-infra:
	$(PYTHON) scripts/scan_infra.py

# The one command that upgrades the deployed dependencies: resolves requirements.in (ranges) into
# requirements.txt (exact versions with hashes), which the remote build installs. Review the diff.
lock: setup
	$(PY) -m piptools compile --quiet --upgrade --generate-hashes --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-find-links --output-file requirements.txt requirements.in

clean:
	rm -rf $(VENV) .venv-scan node_modules console/vendor artifacts .keys .azurite .mypy_cache .ruff_cache .pytest_cache
