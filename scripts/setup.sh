#!/usr/bin/env bash
# Creates .venv (if missing) and installs ALP in editable mode with the pinned dev/CI torch.
# Usage: scripts/setup.sh [dev]   ("dev" adds the test, lint and benchmark tools)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${ALP_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
stamp="$VENV/.alp-setup-$(cat scripts/requirements-*.txt packages/*/pyproject.toml | sha1sum | cut -c1-12)-${1:-run}"
if [ -f "$stamp" ]; then
  exit 0
fi
$PIP install --upgrade pip
# torch/torchaudio are pinned here only (package metadata declares ranges).
$PIP install -r scripts/requirements-torch.txt
$PIP install -e packages/alp-core -e packages/alp-data -e packages/alp-models \
  -e packages/alp-objectives -e packages/alp-eval -e packages/alp-train -e "packages/alp-cli[minilm]"
if [ "${1:-}" = "dev" ]; then
  $PIP install -r scripts/requirements-dev.txt
  # the optional engine, so its multi-process tests run; built against the torch above
  $PIP install --no-build-isolation -r scripts/requirements-deepspeed.txt
fi
touch "$stamp"
