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

# Lint, format, types and the declared import layers (configured in pyproject.toml). Every
# checker runs even when an earlier one fails, so one run lists every finding; any failure fails.
CHECKS = "ruff check ." "ruff format --check ." "mypy ledgerflow" "lint-imports --no-cache"
check: setup
	@failed=0; for c in $(CHECKS); do echo "+ $$c"; .venv/bin/$$c || failed=1; done; exit $$failed

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
