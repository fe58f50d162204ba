# Two commands for a fresh Debian + Python 3.11 machine (no GPU): `make demo` and `make test`.
# Both create .venv, install torch==2.13.0 first (the CPU wheel here), then the suite with its dev extras,
# and tinysoundfont with --no-deps. Nothing is downloaded at run time.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= runs/demo
export NUMBA_CACHE_DIR ?= $(HOME)/.cache/must-bench/numba
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export DS_ACCELERATOR ?= cpu

.PHONY: setup demo test test-slow wordnet clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps tinysoundfont
	-@$(MAKE) --no-print-directory wordnet
	touch $@

# Optional: WordNet synonyms for METEOR (Debian's wordnet-base). Without it METEOR uses exact + stem matching.
wordnet:
	@if [ ! -f /usr/share/wordnet/data.noun ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get install -y -qq wordnet-base wordnet-sense-index >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq wordnet-base wordnet-sense-index >/dev/null 2>&1)) \
	  || echo "WordNet not installed: METEOR will use exact + stem matching"; fi

demo: setup
	$(BIN)/must-bench score examples/demo_predictions.jsonl --bench examples/demo_bench.parquet --json $(OUT)/scores.json

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf runs .pytest_cache
