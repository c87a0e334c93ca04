# Sourced by the scripts a user starts (run.sh, ui.sh): process groups that stop on SIGTERM and Ctrl-C.
#   start_group NAME CMD...   starts CMD in a process group (and session) of its own, with SIGINT and
#                              SIGTERM at their defaults (a backgrounded script's children would otherwise
#                              inherit an ignored SIGINT, and `dagster dev` maps SIGTERM onto SIGINT's
#                              handler, so it would ignore both); sets GROUP_PID (= the group's id)
#   stop_group PGID [NAME]     SIGTERM to the whole group, SIGKILL after STOP_TIMEOUT_S (20), waits for it
#   start_plumber / stop_plumber   r-brms-plumber in such a group, unless one already answers at
#                              BRMS_PLUMBER_URL (then it is left alone)
PLUMBER_PID=""
GROUP_PID=""

start_group() {
  local name=$1; shift
  # not a group leader here (no job control in scripts), so setsid execs in place: $! is the group's id
  setsid env --default-signal=INT,TERM "$@" &
  GROUP_PID=$!
  echo "[$name] started (process group $GROUP_PID)"
}

stop_group() {
  local pgid=$1 name=${2:-process group}
  [ -n "$pgid" ] || return 0
  kill -0 -- "-$pgid" 2>/dev/null || { wait "$pgid" 2>/dev/null || true; return 0; }
  echo "[$name] stopping (process group $pgid)"
  kill -TERM -- "-$pgid" 2>/dev/null || true
  local deadline=$((SECONDS + ${STOP_TIMEOUT_S:-20}))
  while kill -0 -- "-$pgid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.5; done
  if kill -0 -- "-$pgid" 2>/dev/null; then
    echo "[$name] still running after ${STOP_TIMEOUT_S:-20} s: SIGKILL"
    kill -KILL -- "-$pgid" 2>/dev/null || true
  fi
  wait "$pgid" 2>/dev/null || true
}

start_plumber() {
  if curl -fsS "$BRMS_PLUMBER_URL/health" >/dev/null 2>&1; then
    echo "[plumber] already answering at $BRMS_PLUMBER_URL"
    return 0
  fi
  mkdir -p "$SEED_GROWTH_REPO/.local"
  local log="$SEED_GROWTH_REPO/.local/r-brms-plumber.log"
  echo "[plumber] starting at $BRMS_PLUMBER_URL (log: $log)"
  start_group plumber bash -c 'cd "$SEED_GROWTH_REPO/r-brms-plumber" && exec Rscript run.R' >"$log" 2>&1
  PLUMBER_PID=$GROUP_PID
  for _ in $(seq 300); do
    curl -fsS "$BRMS_PLUMBER_URL/health" >/dev/null 2>&1 && return 0
    kill -0 "$PLUMBER_PID" 2>/dev/null || { echo "[plumber] exited; last lines of $log:"; tail -20 "$log"; return 1; }
    sleep 1
  done
  echo "[plumber] no answer after 300 s"; return 1
}

stop_plumber() {
  stop_group "$PLUMBER_PID" plumber
  PLUMBER_PID=""
}
