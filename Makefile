# The two set-up commands of README.md: `make demo` and `make test`.
# Needs on the machine: Python 3.11 (with venv), Java 17, Maven, npm. Everything else
# (Debian packages for libvirt, QEMU and PostgreSQL, Python packages, JVM jars, RabbitMQ) is installed
# by these targets.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin

# The Compose Specification's JSON schema, against which the tests validate docker/compose.yaml:
# the copy npm's dclint 3.1.0 ships (schemas/compose.schema.json), byte for byte the schema of
# the specification's repository as of 2025-07-20 (schema/compose-spec.json). Needs npm.
COMPOSE_SCHEMA_PACKAGE := dclint@3.1.0
COMPOSE_SCHEMA_SHA256  := 46b7d35f19dd93a05f8fea530291bf84d881c1791ec167ecf0e6fb94e639d496
COMPOSE_SCHEMA         := $(VENV)/share/compose-spec/compose-spec.json

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

venv: system-packages $(VENV)/.installed $(COMPOSE_SCHEMA)

$(VENV)/.installed: pyproject.toml constraints.txt | system-packages
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --constraint constraints.txt --editable '.[test]'
	touch $@

# npm verifies the package against the registry's integrity hash; the checksum pins the file.
$(COMPOSE_SCHEMA): | $(VENV)/.installed
	@command -v npm >/dev/null || { echo "npm is needed to fetch the Compose schema ($(COMPOSE_SCHEMA_PACKAGE))" >&2; exit 1; }
	@scratch=$$(mktemp -d) && trap 'rm -rf "$$scratch"' EXIT && \
	  npm pack --silent --pack-destination "$$scratch" $(COMPOSE_SCHEMA_PACKAGE) >/dev/null && \
	  tar -xzf "$$scratch"/*.tgz -C "$$scratch" package/schemas/compose.schema.json && \
	  echo "$(COMPOSE_SCHEMA_SHA256)  $$scratch/package/schemas/compose.schema.json" | sha256sum --check --quiet && \
	  mkdir -p $(@D) && mv "$$scratch/package/schemas/compose.schema.json" $@

# Start the embedded stack, replay the sample corpus, run the jobs, print what landed.
demo: venv
	$(BIN)/stacktide demo

# The whole test suite; the tests start the services they need.
test: venv
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy stacktide connectors jobs host_agent

clean-state:
	$(BIN)/stacktide local down || true
	rm -rf .stacktide
