# The two commands: `make demo` runs everything with live traffic, `make test` passes the tests.
# Each does its own set-up (system packages when root, venv, Kafka runtime, Redis).
# `make test` runs the static checks first (`make check` runs them alone).
.PHONY: demo test test-redis-cluster check unit stack-up stack-down bench setup clean console native pure

setup:
	@scripts/bootstrap.sh

demo: setup native console
	.venv/bin/ledgerflow demo

test: check native console
	scripts/console.sh test
	.venv/bin/python -m pytest --durations=30
	$(MAKE) --no-print-directory test-redis-cluster

# The projection and edge integration tests again, against a private Redis Cluster (three masters,
# a replica each) instead of one Redis: every Redis use of the read models, the rebuild switch, the
# idempotency keys and the consistency tokens (tests/integration/conftest.py, LEDGERFLOW_TEST_REDIS).
# The round-trip counts of the writer are a single-Redis figure (one per master on a cluster); of the
# ingest tests only those that use Redis (event-id claims, consistency tokens) run again. The chaos
# run at CI size (redis-failover among its faults) and its SIGTERM clean-up run on a Redis Cluster too.
REDIS_CLUSTER_TESTS = tests/integration/test_projection_writer.py tests/integration/test_projection_conditions.py \
	tests/integration/test_projection_verify.py tests/integration/test_passed_offsets.py \
	tests/integration/test_rebuild_switch.py tests/integration/test_fresh_rebuild.py \
	tests/integration/test_end_to_end.py tests/integration/test_ingest_edge.py tests/chaos/test_chaos.py \
	tests/integration/test_cli_chaos_stop.py tests/integration/test_chain_head_snapshots.py
test-redis-cluster: setup native
	LEDGERFLOW_TEST_REDIS=cluster .venv/bin/python -m pytest $(REDIS_CLUSTER_TESTS) \
		-k "not round_trip and (not test_ingest_edge or event_id or consistency)"

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

# The compiled core (ledgerflow/native.py lists the modules): the hot path compiled with mypyc into
# C extensions beside its sources, rebuilt when one of them changed; a stale or missing build makes
# ledgerflow run those modules as Python (one line on stderr). `make pure` removes the extensions.
native: setup
	@.venv/bin/python scripts/build_native.py
pure:
	@test ! -x .venv/bin/python || .venv/bin/python scripts/build_native.py --clean

# Lint, format, types and the declared import layers (configured in pyproject.toml). Every
# checker runs even when an earlier one fails, so one run lists every finding; any failure fails.
CHECKS = "ruff check ." "ruff format --check ." "mypy ledgerflow" "lint-imports --no-cache"
check: setup
	@failed=0; for c in $(CHECKS); do echo "+ $$c"; .venv/bin/$$c || failed=1; done; exit $$failed

unit: setup native
	.venv/bin/python -m pytest tests/unit

stack-up: setup native
	.venv/bin/ledgerflow stack up

stack-down:
	.venv/bin/ledgerflow stack down

bench: setup native
	.venv/bin/ledgerflow bench

clean: stack-down pure
	rm -rf .venv .ledgerflow console/node_modules console/dist .console-built
