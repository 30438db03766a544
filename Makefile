# The README's two commands: `make demo` and `make test`. Both build .venv from the lock file first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast repro lock clean up down

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: an unpinned torch would pull several GB of CUDA packages.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/longview demo

# The browser test drives Debian's Chromium (Playwright's own browsers would be a download).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
$(CHROMIUM):
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium || ($(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium)

test: $(STAMP) $(CHROMIUM)
	$(BIN)/pytest

# The unit-level tier for iteration (no loop, servers, browser or real data): under 3 minutes here.
test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow"

# The local stack (Airflow, MLflow, the Feast UI, the service), detached; `make down` stops it.
up: $(STAMP)
	$(BIN)/longview up

down: $(STAMP)
	$(BIN)/longview down

# The batch stages through DVC (inside the venv so stage commands find `longview`).
repro: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

# Re-resolve the lock file from the lower bounds in pyproject.toml (needs the package index).
lock:
	rm -rf /tmp/longview-lock && $(PYTHON) -m venv /tmp/longview-lock
	/tmp/longview-lock/bin/pip install --quiet torch==2.13.0
	/tmp/longview-lock/bin/pip install --quiet ".[test]"
	/tmp/longview-lock/bin/pip freeze --exclude longview | sed 's/^torch==\(.*\)+cpu$$/torch==\1/' > requirements.lock

clean:
	rm -rf $(VENV) .longview
