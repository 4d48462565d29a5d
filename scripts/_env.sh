# Sourced by the other scripts: create or refresh the project's virtual environment in .venv.
# The environment is rebuilt only when pyproject.toml changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SVLLREID_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "svllreid needs Python 3.11 or newer; '$PY' is $("$PY" --version 2>&1). Set PYTHON=/path/to/python3.11." >&2
    exit 2
fi
if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating virtual environment $VENV"
    "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.svllreid-installed"
WANT="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ] || ! "$VENV/bin/python" -c 'import svllreid' 2>/dev/null; then
    echo "==> installing svllreid and its dependencies into $VENV (the first time takes a few minutes)"
    # pip warns about every local index folder that lacks a package; those lines are noise.
    # PYTHONWARNINGS silences setuptools' build-backend advice about editable installs.
    quiet_pip() {
        PYTHONWARNINGS=ignore "$VENV/bin/python" -m pip install --quiet "$@" \
            2> >(grep -v "is ignored: it is neither a file" >&2)
    }
    quiet_pip --upgrade pip
    quiet_pip -e "$ROOT[dev]"
    echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
