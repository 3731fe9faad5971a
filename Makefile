# Two commands: `make run` serves the API, `make test` runs the whole suite.
# Only Python 3.11+ and pip are needed beforehand: uv is bootstrapped from PyPI into .tools/.
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .tools/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := .venv

.PHONY: run test test-citus bench-citus lint fmt env worker demo bench clean browser postgres image containers

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

.venv/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --all-groups --all-extras --python $(PYTHON)
	touch $@

env: .venv/.synced

# `serve` changes no schema: `migrate` brings the (embedded or DATABASE_URL) database up to date.
run: env
	.venv/bin/billing migrate
	.venv/bin/billing serve

test: env lint browser postgres containers
	CONTAINERS_CONF=$(CURDIR)/.build/containers.conf .venv/bin/pytest
	@echo "== the integration suite on a local Citus cluster (the e2e suite there too: make test-citus) =="
	.venv/bin/python -m tests.citus_cluster --or-skip -- $(CITUS_PYTEST) tests/integration

# The integration and e2e suites on a local Citus cluster: a coordinator and 2 workers started
# from the installed Citus (its packages or images; nothing here builds it) in temporary
# folders on loopback ports, the tables distributed by `billing migrate`, then removed. The
# compose and external-PostgreSQL tests and the benchmarks' smoke runs bring their own
# PostgreSQL and are left out. `make test` runs the integration suite there (the e2e suite on
# the cluster takes ~17 minutes on 2 cores, past make test's budget).
CITUS_PYTEST := .venv/bin/pytest -m "not own_postgres" -p no:cacheprovider
test-citus: env
	.venv/bin/python -m tests.citus_cluster -- $(CITUS_PYTEST) tests/integration tests/e2e

# `billing bench usage` and `billing bench close` on such a cluster (Citus' default 32 shards),
# each on a cluster of its own, removed after (README, "Scale-out on Citus").
bench-citus: env
	.venv/bin/python -m tests.citus_cluster --shard-count 32 -- sh -c '.venv/bin/billing bench usage --database-url "$$TEST_DATABASE_URL"'
	.venv/bin/python -m tests.citus_cluster --shard-count 32 -- sh -c '.venv/bin/billing bench close --database-url "$$TEST_DATABASE_URL"'

# The finance page is tested in a real headless Chromium from Debian's packages: install it
# once when missing (needs root or sudo), never downloaded by pip or npm.
browser:
	@if command -v chromium >/dev/null 2>&1; then :; else \
		echo "chromium not found: installing Debian's chromium package (apt-get) for the finance page test"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y chromium; \
	fi

# The deployment tests run on Debian's PostgreSQL and PgBouncer (an external server, as in
# production): install them once when missing (needs root or sudo). The default cluster the
# package starts is stopped: the tests start their own, on loopback, in temporary folders.
postgres:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v pgbouncer >/dev/null \
		&& command -v openssl >/dev/null; then :; else \
		echo "postgresql/pgbouncer not found: installing Debian's postgresql, pgbouncer and openssl (apt-get) for the deployment tests"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y postgresql pgbouncer openssl; \
		for cluster in /etc/postgresql/*/main; do \
			[ -d "$$cluster" ] && $$SUDO pg_ctlcluster "$$(basename "$$(dirname "$$cluster")")" main stop 2>/dev/null || true; \
		done; \
	fi

# The container image (infra/Dockerfile) with podman, rebuilt only when its inputs changed;
# the base and postgres:15 images are made locally when missing (see infra/build-images.sh).
image:
	infra/build-images.sh

# The same for `make test`, which must not fail where podman cannot run: it says what it
# skipped and why (in .build/containers.skip), and the compose test skips with that reason.
containers:
	@infra/build-images.sh --or-skip .build/containers.skip

lint: env
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

fmt: env
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

worker: env
	.venv/bin/billing worker

clean:
	rm -rf .venv .tools .build
