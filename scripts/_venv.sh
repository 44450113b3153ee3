# Sourced by scripts/*: make .venv with accessd (and the test and web extras) installed.
# Re-installs only when pyproject.toml changes.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3}"
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "accessd needs Python 3.11 or newer; $py is $("$py" --version 2>&1)." >&2
  echo "On Raspberry Pi OS: sudo apt-get install python3 python3-venv" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv ..." >&2
  "$py" -m venv .venv
fi
stamp=".venv/.accessd-installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "installing accessd and its dependencies into .venv ..." >&2
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' >&2 || true
  # (PYTHONWARNINGS: setuptools' box about the checkout's accessd/ folder is for
  # editable installs in general; ours is meant to be one)
  PYTHONWARNINGS=ignore .venv/bin/python -m pip install -q -e '.[test,web]' 2>&1 \
    | grep -v '^WARNING: Location' >&2 || true
  .venv/bin/python -c 'import accessd, nfc, gpiozero, serial, sqlite_utils, pytest, starlette, playwright' \
    || { echo "installing into .venv failed" >&2; exit 1; }
  rm -f .venv/.accessd-installed-*
  touch "$stamp"
fi
export PATH="$root/.venv/bin:$PATH"
