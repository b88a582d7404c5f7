# The two commands README.md promises: `make demo` and `make test`.
# Both do all set-up themselves on a fresh Debian 12 machine (as root) and
# are quick when everything is already in place.

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := coop-computing-tools python3-workqueue slurm-wlm munge python3-venv postgresql
DEMO_DIR ?= demo_work
INSTALLED := $(VENV)/.gen3wf-installed

.PHONY: demo test lint setup system-packages clean-demo bench

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

test: setup
	$(VENV)/bin/ruff check python tests bin
	$(VENV)/bin/ruff format --check python tests bin
	$(VENV)/bin/mypy python
	$(VENV)/bin/pytest -ra tests

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
