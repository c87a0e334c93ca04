#!/usr/bin/env bash
# Set-up, then the whole test suite against the real PostgreSQL and the real r-brms-plumber service
# (the tests start the service themselves). Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bash "$SEED_GROWTH_REPO/scripts/setup.sh"
cd "$SEED_GROWTH_REPO"
# the tests create and drop their own databases through this role
export SEED_GROWTH_TEST_ADMIN_URL="${SEED_GROWTH_TEST_ADMIN_URL:-$DATABASE_URL}"
exec python -m pytest "$@"
