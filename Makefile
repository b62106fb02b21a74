# The two set-up commands of README.md: `make demo` and `make test`.
# Needs on the machine: Python 3.11 (with venv), Java 17, Maven. Everything else
# (Debian packages for libvirt, QEMU and PostgreSQL, Python packages, JVM jars, RabbitMQ) is installed
# by these targets.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test venv lint clean-state system-packages

# libvirt-python builds against libvirt-dev; the host agent's tests run a real libvirtd with
# the QEMU driver (software emulation, no KVM needed); the jobs compile jvm/operators with
# javac; the PostgreSQL catalog's tests run a PostgreSQL cluster of their own from Debian's
# server binaries. Installed only when missing.
SYSTEM_PACKAGES := openjdk-17-jdk-headless pkg-config libvirt-dev libvirt-daemon libvirt-daemon-driver-qemu qemu-system-x86 postgresql
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

system-packages:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: system-packages $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt | system-packages
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --constraint constraints.txt --editable '.[test]'
	touch $@

# Start the embedded stack, replay the sample corpus, run the jobs, print what landed.
demo: venv
	$(BIN)/stacktide demo

# The whole test suite; the tests start the services they need.
test: venv
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy stacktide connectors jobs

clean-state:
	$(BIN)/stacktide local down || true
	rm -rf .stacktide
