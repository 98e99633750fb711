# The two commands: `make demo` and `make test`. Everything they need is installed
# from this checkout's own files into .venv (created with the machine's python3.11).
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.fedmark-installed
PYTEST := $(BIN)/python -m pytest

.PHONY: demo test test-slow test-all bench venv browser-deps lock clean dashboard readme-figures

$(STAMP): setup.py overrides.txt requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "uv>=0.4"
	$(BIN)/uv pip sync --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -e . -C editable_mode=compat
	touch $(STAMP)

venv: $(STAMP)

# Debian's Chromium and the JavaScript SDK's locked npm packages (for the browser and Node tests).
browser-deps:
	bash scripts/install_browser_deps.sh

# The dashboard's Chart.js bundle (server/dashboard_src's lock -> server/static/vendor); browser-deps runs it too.
dashboard:
	bash scripts/build_dashboard.sh

# Rewrite README.md's figures block from a demo run (copies out/demo/report/results.json to
# examples/demo/published_results.json first).
readme-figures: venv
	$(BIN)/python scripts/readme_figures.py out/demo/report/results.json

# Re-resolve the pinned set after changing setup.py's dependencies.
lock:
	test -x $(BIN)/uv || ($(PYTHON) -m venv $(VENV) && $(BIN)/python -m pip install -q "uv>=0.4")
	$(BIN)/uv pip compile --python-version 3.11 --override overrides.txt \
	  --extra edge --extra server --extra build --extra dev --extra sim --extra parquet setup.py -o requirements.lock

# The demo is an example in examples/demo (not installed): run it from this checkout, whose
# root `python -m` puts on sys.path; `.venv/bin/fedmark demo` is the same command.
demo: venv
	$(BIN)/python -m fedmark_cli demo --out out/demo

# The whole fast suite (CI runs this). Slow reliability checks: `make test-slow`.
test: venv browser-deps
	$(PYTEST) -m "not slow"

test-slow: venv browser-deps
	$(PYTEST) -m slow

test-all: venv browser-deps
	$(PYTEST)

bench: venv
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) out var test-artifacts .pytest_cache
