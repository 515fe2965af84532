# Everything the project needs is installed here: a fresh machine needs only Python 3.11 and make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint soak clean browser

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m node.devnet

test: $(STAMP) browser
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

# The explorer's browser test drives Debian's chromium (Playwright never downloads a browser).
# Installed here when missing and running as root (CI on a fresh clone); otherwise the test
# skips and says why. Silent when chromium is already there.
CHROMIUM := /usr/bin/chromium
browser:
	@if [ ! -x $(CHROMIUM) ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian's chromium for the explorer browser test"; \
	    apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "note: $(CHROMIUM) is missing and you are not root, so the explorer browser" \
	      "test will skip; install it with: sudo apt-get install chromium"; \
	  fi; \
	fi

# The 30-minute fault soak: every perturbation, cycled, under load (docs/fault-testing.md).
soak: $(STAMP)
	$(PY) -m tests.e2e.runner --scenario soak --minutes $${SOAK_MINUTES:-30}

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
