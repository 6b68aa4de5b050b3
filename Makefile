# The two commands: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: demo test test-topologies test-matrix lint install docs dist bench bench-realistic \
	bench-instructions bench-instructions-check chaos soak clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

# A secret key of this checkout's own (git-ignored), made once: never a published one.
example_project/.secret_key:
	umask 077 && $(BIN)/python -c "import secrets; print(secrets.token_urlsafe(50))" > $@

# The demo needs the package and its [demo] extra only (Redis, Celery and metrics
# modes), not the test tools: a virtualenv made by `make demo` alone stays small.
$(VENV)/.demo-installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install -q -e ".[demo]"
	touch $@

demo: $(VENV)/.demo-installed example_project/.secret_key
	$(BIN)/python manage.py migrate --noinput -v0
	@echo "Open http://127.0.0.1:$(PORT)"
	$(BIN)/daphne -e tcp:port=$(PORT):interface=127.0.0.1:backlog=4096 example_project.asgi:application

# The suite in three parts: most tests in TEST_WORKERS parallel processes (they mostly
# wait on servers and sockets); then the `heavy` ones (chaos, thousands of clients,
# full-speed senders), two at a time; then the `alone` ones (a server's memory), one at
# a time. All parts always run; any failing fails the target (5: PYTEST_ARGS selected none).
TEST_WORKERS ?= 4

test: install
	@$(BIN)/python -m pytest -m "not heavy and not alone" -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS); a=$$?; \
	$(BIN)/python -m pytest -m heavy -n 2 --dist worksteal $(PYTEST_ARGS); b=$$?; \
	$(BIN)/python -m pytest -m alone $(PYTEST_ARGS); c=$$?; \
	[ $$a -eq 5 ] && a=0; [ $$b -eq 5 ] && b=0; [ $$c -eq 5 ] && c=0; exit $$((a || b || c))

# Only the Redis topology tests (also in `make test`): three Redis hosts, and a Sentinel
# failover. Needs redis-server and redis-sentinel (all private, on free ports).
test-topologies: install
	$(BIN)/python -m pytest tests/test_topologies.py tests/test_sharding.py -v --durations=0 $(PYTEST_ARGS)

# The core subset (.ci/core-tests) on every other supported Python/Django combination
# (.ci/matrix, one line each), each in $(MATRIX_DIR)/<name> (default .venv-matrix);
# MATRIX="name ..." picks some.
$(BIN)/uv: $(BIN)/python
	$(BIN)/pip install -q uv

test-matrix: install $(BIN)/uv
	UV=$(BIN)/uv .ci/test-matrix $(MATRIX)

# ruff over the repository, mypy over the package (configured in pyproject.toml).
$(VENV)/.lint-installed: $(VENV)/.installed
	$(BIN)/pip install -q -e ".[test,lint]"
	touch $@

lint: $(VENV)/.lint-installed
	$(BIN)/ruff check .
	$(BIN)/mypy

# The documentation site (Sphinx, Furo, MyST) into docs/_build/html, warnings as errors.
$(VENV)/.docs-installed: $(VENV)/.installed
	$(BIN)/pip install -q -e ".[test,docs]"
	touch $@

docs: $(VENV)/.docs-installed
	$(BIN)/sphinx-build -E -W --keep-going -q -b html docs docs/_build/html
	@echo "Open docs/_build/html/index.html"

# The sdist and the wheel into dist/, checked by twine (tests/test_wheel.py installs
# and uses the wheel in a fresh project as part of `make test`).
dist: install
	rm -rf dist
	$(BIN)/python -m build --outdir dist
	$(BIN)/twine check --strict dist/*

# Side-by-side benchmark on the local Redis (several minutes): table, targets,
# sync-send rate, the realistic scenario (many executions, few streams each,
# four sync sender processes, on a private redis-server: about 15 minutes;
# REALISTIC_ARGS=--quick for about three, seven on a loaded machine), then the scaling curve
# (docs/scaling.png). See docs/benchmarks.md.
REALISTIC_ARGS ?=
$(VENV)/.bench-installed: $(VENV)/.installed
	$(BIN)/pip install -q -e ".[test,bench,fast]"
	touch $@

bench: $(VENV)/.bench-installed
	ulimit -n $$(ulimit -Hn) 2>/dev/null; $(BIN)/python -m bench.run $(BENCH_ARGS)
	ulimit -n $$(ulimit -Hn) 2>/dev/null; $(BIN)/python -m bench.realistic $(REALISTIC_ARGS)
	ulimit -n $$(ulimit -Hn) 2>/dev/null; $(BIN)/python -m bench.scaling
	ulimit -n $$(ulimit -Hn) 2>/dev/null; $(BIN)/python -m bench.multi

# Instructions per connect and per delivered event (raw, fast path, view; with and without
# the fast dependency set), counted by valgrind's callgrind: the same on a loaded machine.
# About two minutes. -check fails if a figure grew past bench/instructions-baseline.json's
# margin; INSTRUCTIONS_ARGS="--update" rewrites the baseline, "--layers memory,redis" adds Redis.
# Needs valgrind and a C compiler (apt-get install valgrind gcc).
INSTRUCTIONS_ARGS ?=
bench-instructions: $(VENV)/.bench-installed
	$(BIN)/python -m bench.instructions $(INSTRUCTIONS_ARGS)

bench-instructions-check: $(VENV)/.bench-installed
	$(BIN)/python -m bench.instructions --check $(INSTRUCTIONS_ARGS)

# Only the realistic scenario (REALISTIC_ARGS=--quick: about three minutes).
bench-realistic: $(VENV)/.bench-installed
	ulimit -n $$(ulimit -Hn) 2>/dev/null; $(BIN)/python -m bench.realistic $(REALISTIC_ARGS)

# The chaos run, long: on each Redis channel layer, 2 daphne + 1 uvicorn, 4 senders,
# 200 reconnecting clients, web processes killed and Redis restarted (with and without
# its data) at random moments; prints the tally. Needs redis-server (private, free port).
CHAOS_MINUTES ?= 3
chaos: install
	ulimit -n $$(ulimit -Hn) 2>/dev/null; $(BIN)/python -m tests.chaos --layer both --minutes $(CHAOS_MINUTES) \
		--executions-per-sender 4 --rate 30 $(CHAOS_ARGS)

# The soak run (not in CI): the production shape (200 executions at once, 1-3 streams
# each, 1 event/s each from sync sender processes) on daphne's fast path and a private
# redis-server, for SOAK_MINUTES; the web process restarts at a third, Redis at two
# thirds. Samples RSS, open files, Redis keys and memory every minute; prints the
# slopes after warm-up and their verdicts, lost events, executions not ended. See docs/soak.md.
SOAK_MINUTES ?= 30
soak: install
	ulimit -n $$(ulimit -Hn) 2>/dev/null; $(BIN)/python -m bench.soak --minutes $(SOAK_MINUTES) $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .venv-matrix *.egg-info .pytest_cache build dist docs/_build
