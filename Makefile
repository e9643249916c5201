# The two commands: `make demo` runs everything with live traffic, `make test` passes the tests.
# Each does its own set-up (system packages when root, venv, Kafka runtime, Redis).
# `make test` runs the static checks first (`make check` runs them alone).
.PHONY: demo test check unit stack-up stack-down bench setup clean console

setup:
	@scripts/bootstrap.sh

demo: setup console
	.venv/bin/ledgerflow demo

test: check console
	scripts/console.sh test
	.venv/bin/python -m pytest

# The admin console (console/ -> console/dist, served by the edge at /console/): rebuilt only when
# one of its sources changed since the last build (stamp file .console-built).
CONSOLE_SRC = $(shell find console/src console/api-docs -type f 2>/dev/null) console/index.html console/package.json \
	console/package-lock.json console/vite.config.ts console/tsconfig.json
console: setup
	@test -f console/dist/index.html || rm -f .console-built
	@$(MAKE) --no-print-directory .console-built
.console-built: $(CONSOLE_SRC) scripts/console.sh
	@scripts/console.sh
	@touch $@

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
	rm -rf .venv .ledgerflow console/node_modules console/dist .console-built
