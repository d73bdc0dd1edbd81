# The README's commands. Everything runs inside .venv, created on first use, so a fresh
# machine needs only Python 3.11 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DEBUG ?= 1

# Variables that would point the SQLite pass at real services; it must not see them.
SERVICE_VARS := DATABASE_URL REDIS_URL CELERY_BROKER_URL CELERY_RESULT_BACKEND

.PHONY: install install-browser run test test-sqlite test-services lint fmt migrate seed clean bench-sync \
	bench-funnel bench-sop bench-mobile

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# The browser suite's Chromium and CJK fonts, as Debian packages (needs root). The suite
# never uses Playwright's own browser downloads; without /usr/bin/chromium it is skipped,
# or fails under CI=true.
install-browser:
	@test -x /usr/bin/chromium || { apt-get update && apt-get install -y chromium fonts-noto-cjk; }

migrate: $(STAMP)
	$(BIN)/python manage.py migrate --noinput

seed: migrate
	$(BIN)/python manage.py seed_demo

# The whole product on embedded defaults: SQLite, the server-less broker, demo data.
# seed_demo is idempotent, so running this again keeps the data (and the logins).
run: seed
	$(BIN)/python manage.py runstack

# SQLite always; then, when TEST_DATABASE_URL and TEST_REDIS_URL are set, the whole suite
# again on PostgreSQL + Redis, including the integration suite (real Celery worker). Both
# passes run even if the first fails, so one run shows every failure; either fails it.
test: $(STAMP)
	@if [ -n "$$TEST_DATABASE_URL" ] && [ -n "$$TEST_REDIS_URL" ]; then \
		failed=""; \
		$(MAKE) --no-print-directory test-sqlite PYTEST_ARGS='-m "not integration"' \
			|| failed="SQLite"; \
		$(MAKE) --no-print-directory test-services || failed="$${failed:+$$failed and }PostgreSQL + Redis"; \
		if [ -n "$$failed" ]; then echo "make test: FAILED in the $$failed pass" >&2; exit 1; fi; \
	elif [ -n "$$TEST_DATABASE_URL$$TEST_REDIS_URL" ]; then \
		echo "make test: set both TEST_DATABASE_URL and TEST_REDIS_URL, or neither." >&2; \
		exit 2; \
	else \
		$(MAKE) --no-print-directory test-sqlite; \
	fi

test-sqlite: $(STAMP)
	@echo "== make test: SQLite, no servers"
	env $(addprefix -u ,$(SERVICE_VARS)) $(BIN)/python -m pytest $(PYTEST_ARGS)

test-services: $(STAMP)
	@test -n "$$TEST_DATABASE_URL" && test -n "$$TEST_REDIS_URL" || { \
		echo "make test-services: set TEST_DATABASE_URL and TEST_REDIS_URL." >&2; exit 2; }
	@echo "== make test: PostgreSQL ($$TEST_DATABASE_URL) + Redis ($$TEST_REDIS_URL)"
	env -u CELERY_RESULT_BACKEND DATABASE_URL="$$TEST_DATABASE_URL" \
		REDIS_URL="$$TEST_REDIS_URL" CELERY_BROKER_URL="$$TEST_REDIS_URL" \
		$(BIN)/python -m pytest $(PYTEST_ARGS)

# WeCom full sync from the simulator into PostgreSQL: 100,000 and 1,000,000 relationships.
# BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/scrm_bench) is emptied.
BENCH_SYNC_SIZES ?= --relationships 100000 --relationships 1000000
bench-sync: $(STAMP)
	env $(addprefix -u ,$(SERVICE_VARS)) $(BIN)/python -m bench.sync $(BENCH_SYNC_SIZES)

# The AARRR funnel at 1,000,000 customers / 10,000,000 activities, seeded with SQL.
# BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/scrm_bench_funnel) is
# dropped and re-created (PostgreSQL on this machine only).
BENCH_FUNNEL_ARGS ?= --customers 1000000
bench-funnel: $(STAMP)
	env $(addprefix -u ,$(SERVICE_VARS)) $(BIN)/python -m bench.funnel $(BENCH_FUNNEL_ARGS)

# SOP dispatch: 100,000 due touchpoints (and 1,000,000 future ones in the table) sent to the
# simulator by 2 real Celery workers on PostgreSQL + Redis, timed. BENCH_DATABASE_URL
# (default postgres://postgres@127.0.0.1:5432/scrm_bench_sop) is dropped and re-created;
# BENCH_REDIS_URL (default redis://127.0.0.1:6379/13) is flushed.
BENCH_SOP_ARGS ?= --due 100000 --future 1000000
bench-sop: $(STAMP)
	env $(addprefix -u ,$(SERVICE_VARS)) $(BIN)/python -m bench.sop $(BENCH_SOP_ARGS)

# Store-staff mobile pages (/m/): p50/p95/max server time and queries per page for a clerk
# with 1,000 customers, rendered in-process 200 times each (target p95 <= 200 ms).
# BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/scrm_bench_mobile) is
# dropped and re-created; BENCH_REDIS_URL (optional) puts the cache in Redis.
BENCH_MOBILE_ARGS ?= --customers 1000 --runs 200
bench-mobile: $(STAMP)
	env $(addprefix -u ,$(SERVICE_VARS)) $(BIN)/python -m bench.mobile $(BENCH_MOBILE_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf var staticfiles .pytest_cache .mypy_cache .ruff_cache
