# The two set-up commands of README.md: `make demo` and `make test`.
# Needs on the machine: Python 3.11 (with venv), Java 17, Maven. Everything else
# (Python packages, JVM jars, RabbitMQ) is installed by these targets.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test venv lint clean-state

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
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
