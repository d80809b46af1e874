# Two commands do everything: `make demo` and `make test`. Each sets itself up on a fresh Debian machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Debian packages the simulator and the tests use: real FAT32/exFAT tools, FUSE, ffmpeg for real MP4s,
# Chromium for the browser tests, CJK fonts so the kiosk's Chinese renders in screenshots; Pango for the
# PDF reports (WeasyPrint) and poppler-utils (pdftoppm) to check in tests that a PDF page renders.
DEB_PACKAGES := dosfstools exfatprogs exfat-fuse fuse3 mtools util-linux ffmpeg chromium fonts-noto-cjk \
	libpango-1.0-0 libpangoft2-1.0-0 poppler-utils

.PHONY: demo test lint deps venv clean

# Checked on every run (dpkg-query is quick): a stamp file would lie after a package is removed.
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

venv: $(STAMP)

demo: deps venv
	$(BIN)/recterm demo --dir var/demo

test: deps venv
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) var test-artifacts .pytest_cache
