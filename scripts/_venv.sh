# Shared by scripts/serve and scripts/test: create ./.venv and install the project with pinned
# dependencies. Re-running is cheap: pip skips what is already installed at the pinned version.
ensure_venv() {
  local extras="$1"
  local python="${PYTHON:-python3}"
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "Stowage needs Python 3.11 or newer (found: $("$python" --version 2>&1))." >&2
    exit 1
  fi
  if [ ! -x .venv/bin/python ]; then
    if ! "$python" -m venv .venv; then
      echo "Could not create a virtual environment. On Debian/Ubuntu: sudo apt-get install python3-venv" >&2
      exit 1
    fi
  fi
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".${extras}"
}
