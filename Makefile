# Every target creates .venv and installs what it needs, so each works on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.installed-runtime
STAMP := $(VENV)/.installed-test
DEMO_ARGS ?=
BENCH_ARGS ?=

.PHONY: demo test lint unit system-deps bench fuzz clean reliability

# The demo needs the runtime only; the tests add their extras (moto, mypy, helm, ...) on top.
$(RUNTIME): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(RUNTIME)

$(STAMP): $(RUNTIME)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(RUNTIME)
	$(BIN)/pullsecret-controller demo $(DEMO_ARGS)

# Installs the real services and tools the end-to-end tests run (needs root, as CI is):
# a registry, skopeo, htpasswd, ZooKeeper, a headless browser, npm (the status page test installs
# axe-core with it) and systemd-analyze; and promtool,
# which runs the chart's alert tests. It comes with the Prometheus server (package prometheus:
# 19 MB download, 96 MB installed, about 15 s), which is not left running.
system-deps:
	@missing=""; \
	command -v docker-registry >/dev/null || missing="$$missing docker-registry"; \
	command -v skopeo >/dev/null || missing="$$missing skopeo"; \
	command -v htpasswd >/dev/null || missing="$$missing apache2-utils"; \
	[ -x /usr/share/zookeeper/bin/zkServer.sh ] || missing="$$missing zookeeper"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@if ! command -v promtool >/dev/null; then \
		echo "installing: prometheus (for promtool)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends prometheus >/dev/null || exit 1; \
		if [ -d /run/systemd/system ]; then systemctl disable --now prometheus >/dev/null 2>&1 || true; fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy controller
	$(BIN)/lint-imports

test: $(STAMP) system-deps lint
	$(BIN)/pytest

# The fast directories (under a minute on 2 cores): the core's unit and property tests, the
# simulator and the secret hygiene. Without make test's lint steps (make lint runs them) and
# without ZooKeeper, moto or the end-to-end runs; the few tests with a real registry skip where
# it is not installed.
unit: $(STAMP)
	$(BIN)/pytest tests/unit tests/simulator tests/hygiene

# The fault-injection suite with longer faults (several minutes, needs root); writes
# docs/reliability.md from the run and fails if a scenario did not recover.
reliability: $(STAMP) system-deps
	$(BIN)/python -m tests.reliability.report

bench: $(STAMP)
	$(BIN)/python -m bench --results bench/RESULTS.md $(BENCH_ARGS)

# Over 100,000 fuzz cases (a few minutes); prints the cases per target and the seed.
# `make fuzz FUZZ_SEED=N` repeats a run; failing examples are also kept under .hypothesis/.
fuzz: $(STAMP)
	seed=$(FUZZ_SEED); seed=$${seed:-$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}; \
	FUZZ_PROFILE=full $(BIN)/pytest tests/fuzz -q --timeout=0 --hypothesis-seed=$$seed

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
