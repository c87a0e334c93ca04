# Local defaults, sourced by the other scripts. Anything already set in the environment wins.
SEED_GROWTH_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export SEED_GROWTH_REPO
if [ -z "${DATABASE_URL:-}" ]; then
  # no database configured: the scripts start and use a local PostgreSQL with this role
  export SEED_GROWTH_LOCAL_PG=1
  export DATABASE_URL="postgresql://seed_growth:seed_growth@127.0.0.1:5432/seed_growth"
fi
export DAGSTER_PG_URL="${DAGSTER_PG_URL:-postgresql://seed_growth:seed_growth@127.0.0.1:5432/seed_growth_dagster}"
export DAGSTER_HOME="${DAGSTER_HOME:-$SEED_GROWTH_REPO}"
# compiled brms models and kept fits live outside the checkout so they survive fresh clones
export BRMS_MODEL_DIR="${BRMS_MODEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/seed-growth/r-brms-plumber}"
export BRMS_PLUMBER_HOST="${BRMS_PLUMBER_HOST:-127.0.0.1}"
export BRMS_PLUMBER_PORT="${BRMS_PLUMBER_PORT:-8000}"
export BRMS_PLUMBER_URL="${BRMS_PLUMBER_URL:-http://127.0.0.1:${BRMS_PLUMBER_PORT}}"
export GROWTH_ENGINE_PYTHON="${GROWTH_ENGINE_PYTHON:-$SEED_GROWTH_REPO/.venv/bin/python}"
export PATH="$SEED_GROWTH_REPO/.venv/bin:$PATH"
