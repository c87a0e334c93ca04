#!/usr/bin/env bash
# The Dagster UI and daemon (schedules fire only where the daemon runs) with the fitting service.
# Stops, with everything it started, on Ctrl-C and on SIGTERM alike (`bash scripts/ui.sh &` ... `kill %1`).
# DAGSTER_UI_HOST / DAGSTER_UI_PORT choose where the UI listens (127.0.0.1:3000).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
source "$SEED_GROWTH_REPO/scripts/plumber.sh"
cd "$SEED_GROWTH_REPO"

DAGSTER_PID=""
stop_all() {
  trap - TERM INT EXIT
  stop_group "$DAGSTER_PID" "dagster dev"
  stop_plumber
}
trap 'stop_all; exit 143' TERM
trap 'stop_all; exit 130' INT
trap stop_all EXIT

start_plumber
start_group "dagster dev" dagster dev -w workspace.yaml -h "${DAGSTER_UI_HOST:-127.0.0.1}" -p "${DAGSTER_UI_PORT:-3000}"
DAGSTER_PID=$GROUP_PID
# `wait` returns as soon as a trapped signal arrives, so the traps run at once
wait "$DAGSTER_PID" || true
