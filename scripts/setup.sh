#!/usr/bin/env bash
# Idempotent set-up on Debian 12 (as root, or with sudo): system packages, PostgreSQL with the project's
# role and databases, the R stack of r-brms-plumber, and the Python virtualenv. Safe to run repeatedly;
# a machine that has everything already is done in seconds.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$SEED_GROWTH_REPO"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

log() { printf '[setup] %s\n' "$*"; }

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# --- system packages ----------------------------------------------------------------------------
python3 -m venv --help >/dev/null 2>&1 || apt_install python3-venv python3-dev
apt_install postgresql-client
# the UI test drives a headless browser (seed_growth_tests/test_ui_browser.py)
apt_install chromium chromium-driver
if [ "${SEED_GROWTH_LOCAL_PG:-0}" = 1 ] && ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
  apt_install postgresql
fi
bash r-brms-plumber/install.sh

# --- PostgreSQL ---------------------------------------------------------------------------------
if [ "${SEED_GROWTH_LOCAL_PG:-0}" = 1 ]; then
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    log "starting the local PostgreSQL cluster"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start
    for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
  # over the local socket as the postgres superuser: works whatever TCP authentication is configured
  as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qAt "$@")
    else (cd / && sudo -u postgres psql -v ON_ERROR_STOP=1 -qAt "$@"); fi
  }
  if [ "$(as_postgres -c "SELECT 1 FROM pg_roles WHERE rolname = 'seed_growth'")" != 1 ]; then
    log "creating role seed_growth"
    as_postgres -c "CREATE ROLE seed_growth LOGIN CREATEDB PASSWORD 'seed_growth'"
  fi
  for db in seed_growth seed_growth_dagster; do
    if [ "$(as_postgres -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]; then
      log "creating database $db"
      as_postgres -c "CREATE DATABASE $db OWNER seed_growth"
    fi
  done
fi

# --- Python ------------------------------------------------------------------------------------
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  python3 -m venv .venv
fi
# the stamp changes whenever a dependency list changes (constraints.txt is optional)
stamp=".venv/.installed-$(cat pyproject.toml $(ls constraints.txt 2>/dev/null) | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  log "installing Python packages"
  .venv/bin/pip install -q --upgrade pip
  constraints=(); [ -f constraints.txt ] && constraints=(-c constraints.txt)
  .venv/bin/pip uninstall -q -y growth-engine 2>/dev/null || true   # the engine's former distribution
  .venv/bin/pip install -q "${constraints[@]}" -e ".[sampler,dev]"
  rm -f .venv/.installed-*; touch "$stamp"
fi
mkdir -p "$BRMS_MODEL_DIR"
log "ready: DATABASE_URL=$(.venv/bin/python -c 'import os; from seed_growth.resources import redact_url; print(redact_url(os.environ["DATABASE_URL"]))')"
