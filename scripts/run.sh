#!/usr/bin/env bash
# The main job end to end on local defaults: set-up, a local PostgreSQL (unless DATABASE_URL is set),
# demo attempts (unless the attempt table has rows; --fresh reloads them), the fitting service, and the
# whole graph materialized for the last complete week. Then it prints where to look.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bash "$SEED_GROWTH_REPO/scripts/setup.sh"
source "$SEED_GROWTH_REPO/scripts/plumber.sh"
cd "$SEED_GROWTH_REPO"

fresh=0; [ "${1:-}" = "--fresh" ] && fresh=1
attempts=$(psql "$DATABASE_URL" -qAt -c "SELECT count(*) FROM attempt" 2>/dev/null || echo 0)
if [ "$fresh" = 1 ] || [ "$attempts" = 0 ]; then
  python -m seed_growth.demo_data --students "${DEMO_STUDENTS:-3000}" --weeks "${DEMO_WEEKS:-16}"
else
  echo "[run] attempt already holds $attempts rows (--fresh reloads the demo data)"
fi

trap stop_plumber EXIT
start_plumber
python -m seed_growth.jobs.fit_bayesian_growth "$@" 2>&1 | grep -v -E "^\s*$" | tail -n 40

cat <<EOT

Done. Where to look:
  psql "$DATABASE_URL" -c "SELECT run_id, fitted_at, engine, converged, posterior_summary->'week' AS week_effect FROM growth_brms_meta ORDER BY fitted_at DESC LIMIT 1"
  psql "$DATABASE_URL" -c "SELECT user_id, week_start, kpis->>'P' AS goal_probability, kpis->>'P_method' AS method FROM weekly_kpi WHERE kpis ? 'P' ORDER BY week_start DESC, user_id LIMIT 10"
  The Dagster UI (runs, lineage, checks, the schedule):  bash scripts/ui.sh   then open http://127.0.0.1:3000
EOT
