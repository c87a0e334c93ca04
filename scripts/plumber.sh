# Sourced: start_plumber starts r-brms-plumber in the background unless one already answers at
# BRMS_PLUMBER_URL; stop_plumber stops the one it started.
PLUMBER_PID=""
start_plumber() {
  if curl -fsS "$BRMS_PLUMBER_URL/health" >/dev/null 2>&1; then
    echo "[plumber] already answering at $BRMS_PLUMBER_URL"
    return 0
  fi
  mkdir -p "$SEED_GROWTH_REPO/.local"
  local log="$SEED_GROWTH_REPO/.local/r-brms-plumber.log"
  echo "[plumber] starting at $BRMS_PLUMBER_URL (log: $log)"
  (cd "$SEED_GROWTH_REPO/r-brms-plumber" && exec Rscript run.R) >"$log" 2>&1 &
  PLUMBER_PID=$!
  for _ in $(seq 300); do
    curl -fsS "$BRMS_PLUMBER_URL/health" >/dev/null 2>&1 && return 0
    kill -0 "$PLUMBER_PID" 2>/dev/null || { echo "[plumber] exited; last lines of $log:"; tail -20 "$log"; return 1; }
    sleep 1
  done
  echo "[plumber] no answer after 300 s"; return 1
}
stop_plumber() {
  if [ -n "$PLUMBER_PID" ]; then kill "$PLUMBER_PID" 2>/dev/null || true; wait "$PLUMBER_PID" 2>/dev/null || true; fi
}
