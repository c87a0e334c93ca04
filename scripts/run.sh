#!/usr/bin/env bash
# The main job end to end on local defaults: set-up, a local PostgreSQL (unless DATABASE_URL is set),
# demo attempts (unless the attempt table has rows; --fresh reloads them), the fitting service, and the
# backtest of P (p_calibration) over earlier weeks, then the whole graph materialized for the last complete
# week (last, so that it is the assets' latest materialization). Then it prints where to look.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bash "$SEED_GROWTH_REPO/scripts/setup.sh"
source "$SEED_GROWTH_REPO/scripts/plumber.sh"
cd "$SEED_GROWTH_REPO"

fresh=0; if [ "${1:-}" = "--fresh" ]; then fresh=1; shift; fi
attempts=$(psql "$DATABASE_URL" -qAt -c "SELECT count(*) FROM attempt" 2>/dev/null || echo 0)
if [ "$fresh" = 1 ] || [ "$attempts" = 0 ]; then
  python -m seed_growth.demo_data --students "${DEMO_STUDENTS:-3000}" --weeks "${DEMO_WEEKS:-16}"
else
  echo "[run] attempt already holds $attempts rows (--fresh reloads the demo data)"
fi

trap stop_plumber EXIT
trap 'stop_plumber; exit 143' TERM
trap 'stop_plumber; exit 130' INT
start_plumber
# the backtest first (past as-of weeks whose target week is observed, then p_calibration; 0 skips it), and
# the current week last: the assets' latest materialization in the UI is then this week's
if [ "${BACKTEST_WEEKS:-4}" -gt 0 ]; then
  python -m seed_growth.cli.backtest --as-of-weeks "${BACKTEST_WEEKS:-4}" 2>&1 | grep -v -E "^\s*$" | tail -n 40
fi
python -m seed_growth.cli.fit_bayesian_growth "$@" 2>&1 | grep -v -E "^\s*$" | tail -n 40

latest_fit="SELECT as_of_week, engine, converged, round((posterior_summary->'week'->>'estimate')::numeric, 4) AS weekly_growth, diagnostics->>'max_rhat' AS max_rhat FROM growth_brms_meta ORDER BY as_of_week DESC, fitted_at DESC LIMIT 1"
some_p="SELECT user_id, week_start, round((kpis->>'P')::numeric, 3) AS goal_probability, kpis->>'P_method' AS method FROM weekly_kpi WHERE kpis ? 'P' AND week_start = (SELECT max(week_start) FROM weekly_kpi) ORDER BY user_id LIMIT 8"
echo; echo "The latest fit:"; psql "$DATABASE_URL" -P footer=off -c "$latest_fit"
echo "A few students' P (probability of reaching the goal):"; psql "$DATABASE_URL" -P footer=off -c "$some_p"
cat <<EOT
Where to look next:
  the backtest:   psql "\$DATABASE_URL" -c "SELECT * FROM p_calibration ORDER BY as_of_week, method"
  the Dagster UI (runs, lineage, checks, the schedule):  bash scripts/ui.sh   then open http://127.0.0.1:3000
EOT
