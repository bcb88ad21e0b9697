#!/usr/bin/env bash
#! Installs schemathesis (from PyPI, pinned) in its own virtualenv under
#! ~/.cache/deploy/schemathesis, for tests/it/openapi.rs (which runs it against a gateway).
#! Safe to run again: an installed pinned version is kept.
set -euo pipefail
VERSION=4.32.5
venv="${DEPLOY_SCHEMATHESIS_VENV:-$HOME/.cache/deploy/schemathesis}"
if "$venv/bin/schemathesis" --version 2>/dev/null | grep -qx "schemathesis, version $VERSION"; then
    echo "schemathesis $VERSION: installed ($venv)"
    exit 0
fi
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION"
"$venv/bin/schemathesis" --version
