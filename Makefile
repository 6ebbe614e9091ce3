# Every target that needs Python tooling installs uv (when missing) and syncs the
# locked environment first, so a machine with nothing but python3 can run them.
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
RUN := $(UV) run --frozen
SUITES := servicekit books orders workers devstack web

.DEFAULT_GOAL := help
.PHONY: help deps run test lint fmt migrate seed bench check-integrity chaos keys clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  \033[36m%-8s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

deps: ## Install uv if needed and sync the locked environment
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv \
		|| python3 -m pip install --quiet --user --break-system-packages uv
	@$(UV) sync --frozen --quiet

run: deps ## Start the whole stack (embedded PostgreSQL/Valkey unless URLs are set); Ctrl-C stops it
	@$(RUN) python -m devstack.run

# Debian packages that some tests use, as command:package (those tests skip without them):
# promtool and Prometheus for the monitoring tests, docker-compose to validate the compose file,
# kubectl to render the Kubernetes overlays, Chromium for the web tests in a real browser,
# wrk for the bench tests (the bench loads HTTP with it).
TEST_TOOLS := promtool:prometheus docker-compose:docker-compose kubectl:kubectl chromium:chromium wrk:wrk

test: deps ## Run every test suite (embedded servers unless TEST_DATABASE_URL/TEST_REDIS_URL)
	@for tool in $(TEST_TOOLS); do \
		command=$${tool%%:*}; package=$${tool##*:}; \
		command -v $$command >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 \
		|| { echo "installing $$package ($$command) from Debian for the tests that use it ..."; \
		     apt-get install -y -qq $$package >/dev/null 2>&1 \
		     || { apt-get update -qq && apt-get install -y -qq $$package >/dev/null; }; } \
		|| echo "could not install $$package: the tests that use $$command will skip"; \
	done
	@status=0; for suite in $(SUITES); do \
		echo "==> $$suite"; \
		$(RUN) pytest -c pyproject.toml --rootdir $$suite $$suite/tests $(PYTEST_ARGS) || status=1; \
	done; exit $$status

lint: deps ## ruff (lint + format check) and mypy
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy servicekit/src books/src orders/src workers/src devstack/src web/src

fmt: deps ## Format and auto-fix with ruff
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

migrate: deps ## Apply database migrations (to the URLs in the environment or the local stack)
	@$(RUN) python -m devstack.run migrate

seed: deps ## Load demo books with COPY (SEED_BOOKS=1000), or SCENARIO=minimal|high_scale lending data (TRUNCATE=1 to replace it)
	@$(RUN) python -m devstack.seed $(if $(SCENARIO),--scenario $(SCENARIO) $(if $(TRUNCATE),--truncate),--books $${SEED_BOOKS:-1000})

bench: deps ## Benchmark the running stack against raw-driver baselines (SCALE=1m: seed 1M books, rows at depth 500,000)
	@$(RUN) python -m devstack.bench $(if $(SCALE),--scale $(SCALE))

check-integrity: deps ## Check that books and orders agree on every settled order and loan (exit 1 if not)
	@$(RUN) python -m devstack.integrity

chaos: deps ## Place orders and borrows while relays and workers are SIGKILLed (own servers; ORDERS=1000)
	@$(RUN) python -m devstack.chaos --orders $${ORDERS:-1000}

# The local stack's databases unless BOOKS_DATABASE_URL / ORDERS_DATABASE_URL are set.
keys: deps ## API keys of both services: ARGS="create --role admin|desk|client --name NAME", ARGS=list, ARGS="revoke PREFIX"
	@BOOKS_DATABASE_URL=$${BOOKS_DATABASE_URL:-postgresql://postgres@127.0.0.1:5433/books_db} \
	ORDERS_DATABASE_URL=$${ORDERS_DATABASE_URL:-postgresql://postgres@127.0.0.1:5433/orders_db} \
	$(RUN) python -m servicekit.api_keys $(ARGS)

clean: ## Remove the local stack's data, virtualenv and caches
	rm -rf .data .venv .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
