#!/bin/sh
# The service's watchdog (started by service_start(), see R/service.R): waits until the service process
# $1 is gone (dead or a zombie), then kills every process whose environment holds $2=$1, i.e. everything
# the service started (workers, rstan's chain processes, the collapsed engine), so that a service killed
# with SIGKILL leaves nothing running that could still write into the fit store.
pid=$1
marker="$2=$1"
alive() {
  [ -r "/proc/$pid/stat" ] || return 1
  state=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -c1)
  [ -n "$state" ] && [ "$state" != "Z" ]
}
while alive; do sleep 1; done
# a few passes: a process may start a child while the previous pass runs
for _ in 1 2 3; do
  for environ in /proc/[0-9]*/environ; do
    p=${environ#/proc/}
    p=${p%/environ}
    [ "$p" = "$$" ] && continue
    if tr '\0' '\n' < "$environ" 2>/dev/null | grep -qxF "$marker"; then kill -KILL "$p" 2>/dev/null; fi
  done
  sleep 0.2
done
