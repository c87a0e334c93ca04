#!/usr/bin/env bash
# The project's static checks, as CI runs them before the tests (fast: a lint error fails in seconds):
# ruff (lint and format), pyright (basic) on seed_growth and growth_engine, lintr on the R service.
# Expects the set-up of scripts/setup.sh (the .venv and R with lintr).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$SEED_GROWTH_REPO"
echo "[lint] ruff check"; ruff check .
echo "[lint] ruff format --check"; ruff format --check .
echo "[lint] pyright"; pyright
echo "[lint] lintr"; bash r-brms-plumber/lint.sh
echo "[lint] all clean"
