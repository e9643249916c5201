# The two commands: `make demo` runs everything with live traffic, `make test` passes the tests.
# Each does its own set-up (system packages when root, venv, Kafka runtime, Redis).
# `make test` runs the static checks first (`make check` runs them alone).
.PHONY: demo test check unit stack-up stack-down bench setup clean

setup:
	@scripts/bootstrap.sh

demo: setup
	.venv/bin/ledgerflow demo

test: check
	.venv/bin/python -m pytest

# Lint, format, types (mypy config in pyproject.toml) and the declared import layers (import-linter).
check: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy ledgerflow
	.venv/bin/lint-imports

unit: setup
	.venv/bin/python -m pytest tests/unit

stack-up: setup
	.venv/bin/ledgerflow stack up

stack-down:
	.venv/bin/ledgerflow stack down

bench: setup
	.venv/bin/ledgerflow bench

clean: stack-down
	rm -rf .venv .ledgerflow
