# Two commands: `make run` serves the API, `make test` runs the whole suite.
# Only Python 3.11+ and pip are needed beforehand: uv is bootstrapped from PyPI into .tools/.
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .tools/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := .venv

.PHONY: run test lint fmt env worker demo bench clean browser

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

test: env lint browser
	.venv/bin/pytest

# The finance page is tested in a real headless Chromium from Debian's packages: install it
# once when missing (needs root or sudo), never downloaded by pip or npm.
browser:
	@if command -v chromium >/dev/null 2>&1; then :; else \
		echo "chromium not found: installing Debian's chromium package (apt-get) for the finance page test"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y chromium; \
	fi

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
	rm -rf .venv .tools
