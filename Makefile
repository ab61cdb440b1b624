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

.PHONY: setup test-tools run up down test test-python test-rust test-containers lint bench clean

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

# The embedded default (synthetic market, paper broker, replay feed, ./runtime
# as the volume): training, validation and live as local processes with the
# commands and environment of docker-compose.yml. Ctrl-C stops them cleanly.
run: setup
	$(PY) -m deploy.local run

# The same in the background (logs in runtime/logs); `make down` stops it.
up: setup
	$(PY) -m deploy.local up

down:
	$(PY) -m deploy.local down

test: setup test-tools test-rust test-python

# promtool and prometheus for the monitoring tests: installed when missing (and
# this machine can), or a one-line instruction.
test-tools:
	bash deploy/tools/ensure-test-tools.sh

test-rust:
	cd mcts_rs && cargo test --release

# two workers, a file each at a time (its fixtures and its order stay together): the suite is
# mostly services starting and answering, so two keep both cores busy
test-python: setup test-tools
	$(PY) -m pytest -n 2 --dist loadfile

# The image and `docker-compose up` on a real engine (deploy/images/test-containers.sh):
# installs Debian's docker.io, docker-compose and debootstrap when missing (needs
# root or sudo), builds local base images and the project image, runs the stack.
test-containers: setup
	bash deploy/images/test-containers.sh

# ruff for Python, the import contracts of pyproject.toml (the services independent, the
# library importing no service, only shared.search importing mcts_rs), clippy for Rust
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	cd mcts_rs && cargo clippy --release --all-targets --features python -- -D warnings

# every benchmark under bench/, one after another (micro bench NAME for one)
bench: setup
	$(PY) -m micro bench all

clean:
	rm -rf $(VENV) mcts_rs/target runtime
