# The two commands README.md promises: `make demo` and `make test`.
# Both do all set-up themselves on a fresh Debian 12 machine (as root) and
# are quick when everything is already in place.

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := coop-computing-tools python3-workqueue slurm-wlm munge python3-venv postgresql
DEMO_DIR ?= demo_work
PYTEST_ARGS ?= -ra --durations=15 tests
INSTALLED := $(VENV)/.gen3wf-installed
# The second test leg's environment (see test-latest below).
LATEST_VENV ?= .venv-latest
LATEST_PYTHON ?= $(firstword $(wildcard /root/.pyenv/versions/3.12*/bin/python3.12) \
                  $(shell command -v python3.12 python3.13 2>/dev/null))
LATEST_PYTEST_ARGS ?= -ra --durations=15 tests
LATEST_INSTALLED := $(LATEST_VENV)/.gen3wf-installed

.PHONY: demo test test-leg1 lint setup system-packages clean-demo bench bench-scale bench-routing test-latest

setup: $(INSTALLED)

# Debian packages: Work Queue (and its Python bindings), Slurm, munge.
# `dpkg -s` first, so an already set-up machine does not touch apt at all.
system-packages:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

# The venv is made from Debian's python3 (3.11) with system site-packages,
# because that is the interpreter Debian's Work Queue bindings are built for.
$(INSTALLED): pyproject.toml | system-packages
	test -x $(PY) || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m desc.gen3_workflow.cli.ndcctools_shim
	touch $@

demo: setup
	$(VENV)/bin/gen3wf-demo --workdir $(DEMO_DIR)

# The whole suite in both environments (legs): .venv (Debian's Python 3.11,
# Work Queue) and .venv-latest (Python 3.12 with the newest middleware from
# PyPI; see test-latest).  The legs run at the same time -- most of a leg is
# waiting on bps, parsl, Slurm and PostgreSQL subprocesses, so two cores do
# both in little more than the time of one -- each line prefixed by its leg.
# Both legs run to the end; `make test` fails if either fails.
# TEST_LEGS=serial runs them one after the other instead.
TEST_LEGS ?= parallel
test: setup
	$(VENV)/bin/ruff check python tests bin
	$(VENV)/bin/ruff format --check python tests bin
	$(VENV)/bin/mypy python
	@set -o pipefail; status=0; \
	prefix() { trap '' INT TERM; exec sed -u "s/^/[$$1] /"; }; \
	leg1() { $(MAKE) --no-print-directory test-leg1 2>&1 | prefix "leg 1"; }; \
	leg2() { $(MAKE) --no-print-directory test-latest 2>&1 | prefix "leg 2"; }; \
	if [ "$(TEST_LEGS)" = serial ]; then \
	  leg1 || status=1; leg2 || status=1; \
	else \
	  set -m; leg1 & one=$$!; leg2 & two=$$!; set +m; \
	  trap 'kill -INT -- -$$one -$$two 2>/dev/null' INT TERM; \
	  for leg in $$one $$two; do \
	    while wait $$leg; rc=$$?; [ $$rc -gt 128 ] && kill -0 $$leg 2>/dev/null; do :; done; \
	    [ $$rc = 0 ] || status=1; \
	  done; \
	fi; \
	if [ $$status = 0 ]; then echo "make test: both legs passed"; \
	else echo "make test: a leg FAILED (see the [leg 1] / [leg 2] lines above)"; fi; \
	exit $$status

test-leg1: setup
	$(VENV)/bin/pytest $(PYTEST_ARGS)

clean-demo:
	rm -rf $(DEMO_DIR)

# process vs in_process mode vs lsst-ctrl-bps-parsl, and planning figures
# (options: make bench BENCH_ARGS="--runs 1 --sleep 0.1").
# lsst-ctrl-bps-parsl 30.2026.300 passes Config(checkpoint_mode=...), which
# parsl dropped after 2025.12.1: it gets a venv of its own, with this
# package (for the demo tasks) but not its parsl.
OFFICIAL_VENV := .venv-official
$(OFFICIAL_VENV)/.installed:
	test -x $(OFFICIAL_VENV)/bin/python || /usr/bin/python3 -m venv $(OFFICIAL_VENV)
	$(OFFICIAL_VENV)/bin/pip install -q lsst-ctrl-bps-parsl lsst-ctrl-mpexec 'parsl<=2025.12.1' numpy pyyaml
	$(OFFICIAL_VENV)/bin/pip install -q --no-deps -e .
	touch $@

bench: setup $(OFFICIAL_VENV)/.installed
	GEN3WF_OFFICIAL_VENV=$(abspath $(OFFICIAL_VENV)) $(PY) bin/gen3wf-bench $(BENCH_ARGS)

# Null jobs at 10^4 and 10^5 (ThreadPool and HighThroughput) through the
# real plug-in: jobs/s, peak and per-job RSS, status latency, what grows
# (see doc/scale.md), e.g.
#   make bench-scale BENCH_SCALE_ARGS="--jobs 10000 --executors ThreadPool --kill-restart"
BENCH_SCALE_ARGS ?=
bench-scale: setup
	$(PY) -m desc.gen3_workflow.benchmarks.bench_scale $(BENCH_SCALE_ARGS)

# Large-memory worker slots booked with and without routing jobs by memory
# (parsl_config.executors), on a private Slurm cluster; needs root.
bench-routing: setup
	$(PY) -m desc.gen3_workflow.benchmarks.bench_routing $(BENCH_ROUTING_ARGS)

# The second test leg: Python 3.12/3.13 with the newest LSST middleware from
# PyPI, as a user of a current lsst_distrib has it.  No Work Queue bindings
# exist for it; those tests skip.
#   make test-latest                                  # the whole suite
#   make test-latest LATEST_PYTEST_ARGS="-m unit"     # the unit tests only
#   make test-latest LATEST_PYTHON=/path/to/python3.12

$(LATEST_INSTALLED): pyproject.toml
	@if [ -z "$(LATEST_PYTHON)" ]; then \
	  echo "make test-latest: no Python 3.12 or 3.13 found (looked for /root/.pyenv/versions/3.12*/bin/python3.12," \
	       "python3.12 and python3.13 on PATH); give one with LATEST_PYTHON=/path/to/python3.12" >&2; \
	  exit 1; fi
	test -x $(LATEST_VENV)/bin/python || $(LATEST_PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade --upgrade-strategy eager -e '.[test]'
	touch $@

test-latest: $(LATEST_INSTALLED)
	$(LATEST_VENV)/bin/python -c 'import sys, lsst.ctrl.bps, parsl; print("test-latest: Python", sys.version.split()[0], "ctrl_bps", lsst.ctrl.bps.__version__, "parsl", parsl.__version__)'
	$(LATEST_VENV)/bin/pytest $(LATEST_PYTEST_ARGS)
