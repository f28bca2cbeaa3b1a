# The two commands in the README:
#   make app    start the app on the bundled default model
#   make test   install everything the tests need, then run the whole suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Use sudo for apt only when not root.
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: app test lint bench system-deps default-model

app: $(VENV)/.app-deps
	$(BIN)/python app.py

test: $(VENV)/.test-deps system-deps
	$(BIN)/python -m ruff check .
	$(BIN)/python -m pytest

lint: $(VENV)/.test-deps
	$(BIN)/python -m ruff check .

bench: $(VENV)/.app-deps
	$(BIN)/python bench/bench_inference.py

# Rebuild the shipped default model exactly as documented in the README.
default-model: $(VENV)/.app-deps
	rm -rf build/shapes-data
	$(BIN)/python -m vision synth build/shapes-data --per-class 250 --size 64 --seed 0
	$(BIN)/python -m vision train build/shapes-data --model resnet_small --epochs 30 \
	    --patience 10 --seed 0 --name "Shapes (default)" --out models/shapes --overwrite

$(VENV)/.app-deps: requirements.txt
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.test-deps: $(VENV)/.app-deps requirements-test.txt
	$(BIN)/python -m pip install -q -r requirements-test.txt
	touch $@

# Debian's Chromium for the browser tests (Playwright drives it; it downloads no browser).
system-deps:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }
