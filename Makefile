# The two commands in the README:
#   make app    start the app on the bundled default model
#   make test   install everything the tests need, then run the whole suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Use sudo for apt only when not root.
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: app test lint bench system-deps default-model web-model

app: $(VENV)/.app-deps web/node_modules/.installed
	$(BIN)/python app.py

test: $(VENV)/.test-deps system-deps web/node_modules/.installed
	$(BIN)/python -m ruff check .
	cd web && node --test test/
	$(BIN)/python -m pytest

lint: $(VENV)/.test-deps
	$(BIN)/python -m ruff check .

bench: $(VENV)/.test-deps web/node_modules/.installed
	$(BIN)/python bench/bench_inference.py
	$(BIN)/python bench/bench_explain.py
	$(BIN)/python bench/bench_app.py
	$(BIN)/python bench/bench_guard.py
	$(BIN)/python bench/bench_web.py

# Rebuild the shipped default model exactly as documented in the README.
default-model: $(VENV)/.app-deps
	rm -rf build/shapes-data
	$(BIN)/python -m vision synth build/shapes-data --per-class 250 --size 64 --seed 0
	$(BIN)/python -m vision train build/shapes-data --model resnet_small --epochs 30 \
	    --patience 10 --seed 0 --name "Shapes (default)" --out models/shapes --overwrite

# Re-export the default model for the static page in web/.
web-model: $(VENV)/.app-deps
	$(BIN)/python -m vision export models/shapes --format tfjs --out web/model --overwrite

$(VENV)/.app-deps: requirements.txt
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.test-deps: $(VENV)/.app-deps requirements-test.txt
	$(BIN)/python -m pip install -q -r requirements-test.txt
	touch $@

# TF.js for the web page, from npm at set-up time (never committed, never from a CDN).
web/node_modules/.installed: web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund
	touch $@

# Debian's Chromium for the browser tests (Playwright drives it; it downloads no browser).
system-deps:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }
