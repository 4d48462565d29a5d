#!/usr/bin/env bash
# Set up (or refresh) .venv and the browser tests' Chromium, then lint, check the import layers and the
# types, build the documentation site (strict: any warning fails), and run the tests.
#   bash scripts/test.sh          the whole suite (the README's test command, and CI's)
#   bash scripts/test.sh --fast   the fast tier: everything not marked slow (training, demo, benchmarks)
# Other arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
source scripts/_browser.sh
tier=(--durations=15)
if [ "${1:-}" = "--fast" ]; then
    shift
    tier=(-m "not slow" --durations=5)
fi
echo "==> ruff"
ruff check .
ruff format --check .
echo "==> import layers (import-linter)"
lint-imports --no-logo --no-cache
echo "==> types (mypy)"
mypy
echo "==> docs (mkdocs build --strict)"
site="$(mktemp -d)"
NO_MKDOCS_2_WARNING=1 mkdocs build --strict --site-dir "$site"  # not --quiet: it hides the warnings that --strict counts
rm -rf "$site"
echo "==> pytest"
exec python -m pytest "${tier[@]}" "$@"
