#!/usr/bin/env bash
# Set up (or refresh) .venv, then lint and run the whole test suite. Extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
echo "==> ruff"
ruff check .
ruff format --check .
echo "==> import layers (import-linter)"
lint-imports --no-logo --no-cache
echo "==> pytest"
exec python -m pytest "$@"
