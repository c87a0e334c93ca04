#!/usr/bin/env bash
# The benchmarks of BENCHMARKS.md: set-up, then benchmarks/run.py (which starts its own r-brms-plumber and
# creates and drops its own databases). Extra arguments go to it, e.g. --sizes 100,1000 --engines collapsed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bash "$SEED_GROWTH_REPO/scripts/setup.sh"
cd "$SEED_GROWTH_REPO"
export SEED_GROWTH_TEST_ADMIN_URL="${SEED_GROWTH_TEST_ADMIN_URL:-$DATABASE_URL}"
exec python -m benchmarks.run "$@"
