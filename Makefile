# The README's two commands: `make run` and `make test`. Each works on a fresh
# machine by itself: it creates .venv, installs the pinned dependencies and
# builds the Rust search.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
DEPS   := $(VENV)/.deps-installed
MCTS   := $(VENV)/.mcts-built
MCTS_SOURCES := $(wildcard mcts_rs/src/*.rs) mcts_rs/Cargo.toml mcts_rs/pyproject.toml $(wildcard mcts_rs/python/mcts_rs/*)

.PHONY: setup run test test-python test-rust lint bench clean

setup: $(DEPS) $(MCTS)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(DEPS): pyproject.toml | $(PY)
	$(PIP) install --upgrade pip >/dev/null
	$(PIP) install -e '.[dev]'
	touch $@

$(MCTS): $(MCTS_SOURCES) $(DEPS)
	$(PIP) install ./mcts_rs
	touch $@

# Embedded default: synthetic GBPJPY-like market -> bar store -> feature store,
# then the training service on ./runtime (Ctrl-C stops it; it resumes next time).
run: setup
	$(PY) -m shared.data demo
	@echo "training: http://localhost:8001/status  /health  /ready  /metrics   (checkpoints in runtime/checkpoints)"
	CHECKPOINT_DIR=runtime/checkpoints $(PY) -m services.training

test: setup test-rust test-python

test-rust:
	cd mcts_rs && cargo test --release

test-python: setup
	$(PY) -m pytest

lint:
	cd mcts_rs && cargo clippy --release --all-targets --features python -- -D warnings

bench: setup
	$(PY) -m bench.features
	$(PY) -m bench.mcts
	$(PY) -m bench.selfplay

clean:
	rm -rf $(VENV) mcts_rs/target runtime
