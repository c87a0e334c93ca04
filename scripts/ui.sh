#!/usr/bin/env bash
# The Dagster UI and daemon (schedules fire only where the daemon runs) with the fitting service.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
source "$SEED_GROWTH_REPO/scripts/plumber.sh"
cd "$SEED_GROWTH_REPO"
trap stop_plumber EXIT
start_plumber
dagster dev -w workspace.yaml -h "${DAGSTER_UI_HOST:-127.0.0.1}" -p "${DAGSTER_UI_PORT:-3000}"
