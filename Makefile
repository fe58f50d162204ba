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

BASELINES := random prior constant text-only dsp oracle

# The main job: build the small benchmark, evaluate the six baselines, write the comparison report.
demo: setup
	$(BIN)/must-bench build --config configs/bench/small.yaml --out $(OUT)/bench
	for m in $(BASELINES); do $(BIN)/must-bench evaluate --model $$m --bench $(OUT)/bench --out $(OUT)/runs/$$m || exit 1; done
	$(BIN)/must-bench report $(addprefix $(OUT)/runs/,$(BASELINES)) --out $(OUT)/report
	@echo "report: $(OUT)/report/report.md"

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf runs .pytest_cache
