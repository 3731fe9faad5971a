# Two commands: `make run` serves the API, `make test` runs the whole suite.
# Only Python 3.11+ and pip are needed beforehand: uv is bootstrapped from PyPI into .tools/.
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .tools/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := .venv

.PHONY: run test lint fmt env worker demo bench clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

.venv/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --all-groups --python $(PYTHON)
	touch $@

env: .venv/.synced

run: env
	.venv/bin/billing serve

test: env lint
	.venv/bin/pytest

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
