#!/usr/bin/env bash
# Makes the Python the end-to-end tests drive `decision-gate mcp` with: a virtualenv in the
# cache, keyed by the pinned version of the MCP Python SDK (a real MCP client that nobody
# here wrote), created and filled from PyPI only when missing. Prints its python's path.
#
#   DECISION_GATE_MCP_PYTHON=$(hack/python.sh)
. "$(dirname "$0")/lib.sh"

venv=$CACHE_DIR/venv/mcp-$MCP_PYTHON_VERSION
python=$venv/bin/python

if [ ! -x "$python" ] || ! "$python" -c 'import mcp' >/dev/null 2>&1; then
  command -v python3 >/dev/null || die "python3 is required for the MCP client tests (apt-get install python3 python3-venv)"
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      log "installing python3-venv"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null 2>&1 ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; }
    else
      die "python3 cannot make a virtualenv: install python3-venv"
    fi
  fi
  mkdir -p "$CACHE_DIR/locks"
  (
    # Two runs at once: the later waits for the first, then finds the virtualenv made.
    flock 9
    if ! "$python" -c 'import mcp' >/dev/null 2>&1; then
      rm -rf "$venv"
      with_progress "making a Python virtualenv with the MCP Python SDK $MCP_PYTHON_VERSION" \
        "$CACHE_DIR/logs/venv-mcp-$MCP_PYTHON_VERSION.log" \
        bash -c 'python3 -m venv "$1" && "$1/bin/pip" install --disable-pip-version-check --no-input -q "mcp==$2"' \
        - "$venv" "$MCP_PYTHON_VERSION"
    fi
  ) 9>"$CACHE_DIR/locks/venv-mcp.lock"
fi
printf '%s\n' "$python"
