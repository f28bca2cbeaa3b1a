# The two commands in the README:
#   make app    start the app on the bundled default model
#   make test   install everything the tests need, build the docs (strict), then run the whole suite
#   make docs   serve the guide (docs/, mkdocs.yml) on http://127.0.0.1:8000
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Use sudo for apt only when not root.
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: app test docs lint bench system-deps shapes-model web-model

app: $(VENV)/.app-deps web/node_modules/.installed web/model/model.json
	$(BIN)/python app.py

test: $(VENV)/.test-deps system-deps web/node_modules/.installed tests/teachable/node_modules/.installed \
      web/model/model.json
	$(BIN)/python -m ruff check .
	cd web && node --test test/
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --quiet --site-dir site
	# Two workers, a test file each at a time (module fixtures stay in one process): 27 min on 2
	# cores where one process took 38, since much of the suite waits on browsers, servers and children.
	$(BIN)/python -m pytest -n 2 --dist loadfile

# The guide, rebuilt on every save; a broken link or page is an error in `make test`.
docs: $(VENV)/.test-deps
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs serve

lint: $(VENV)/.test-deps
	$(BIN)/python -m ruff check .

bench: $(VENV)/.test-deps web/node_modules/.installed web/model/model.json
	$(BIN)/python bench/bench_inference.py
	$(BIN)/python bench/bench_explain.py
	$(BIN)/python bench/bench_app.py
	$(BIN)/python bench/bench_guard.py
	$(BIN)/python bench/bench_load.py
	$(BIN)/python bench/deploy_cli.py
	$(BIN)/python bench/bench_web.py
	$(BIN)/python bench/bench_real.py
	$(BIN)/python bench/bench_trust.py
	$(BIN)/python bench/bench_browser.py

# The everyday-objects default (ImageNet-1k on EfficientNet-Lite0), built from the installed
# weights package: ~5 s, not committed.
models/everyday/vision.json: $(VENV)/.app-deps
	$(BIN)/python -m vision everyday --out models/everyday --overwrite

# Rebuild the shipped shapes example model exactly as documented in docs/models.md.
shapes-model: $(VENV)/.app-deps
	rm -rf build/shapes-data
	$(BIN)/python -m vision synth build/shapes-data --per-class 250 --size 64 --seed 0
	$(BIN)/python -m vision train build/shapes-data --model resnet_small --epochs 30 \
	    --patience 10 --seed 0 --name "Shapes (default)" --out models/shapes --overwrite

# The static page's model: the everyday-objects model with per-channel uint8 weights (5.2 MB,
# the Keras top-1 on real photos: see docs/browser.md) and its pooled features as a second output
# (the page trains new classes on them), built at set-up like the model itself, not committed.
web/model/model.json: models/everyday/vision.json
	$(BIN)/python -m vision export models/everyday --format tfjs --quantize uint8 --features --out web/model --overwrite

web-model:
	rm -f web/model/model.json
	$(MAKE) web/model/model.json

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

# Teachable Machine's own image library and the TF.js 1.3.1 it peers on, for the tests that make
# genuine TM exports in Chromium (tests/teachable_fixtures.py); apart from web/'s TF.js 4.22.
tests/teachable/node_modules/.installed: tests/teachable/package.json tests/teachable/package-lock.json
	cd tests/teachable && npm ci --no-audit --no-fund
	touch $@

# Debian's Chromium for the browser tests (Playwright drives it; it downloads no browser).
system-deps:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }
