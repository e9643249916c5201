# The two commands: `make demo` runs everything with live traffic, `make test` passes the tests.
# Each does its own set-up (system packages when root, venv, Kafka runtime, Redis).
.PHONY: demo test unit stack-up stack-down bench setup clean

setup:
	@scripts/bootstrap.sh

demo: setup
	.venv/bin/ledgerflow demo

test: setup
	.venv/bin/python -m pytest

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
