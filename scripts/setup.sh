#!/usr/bin/env bash
# Makes this machine ready to run Ansim: PostgreSQL with PostGIS, Redis, the virtualenv in .venv/.
# Idempotent: what is already there is left alone. Usage: scripts/setup.sh [--browser]
#   --browser  also install Debian's chromium (for the browser tests) and promtool (alert rules)
set -euo pipefail
cd "$(dirname "$0")/.."

DATABASE_URL=${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/ansim}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
want_browser=0
for arg in "$@"; do [ "$arg" = "--browser" ] && want_browser=1; done

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
updated=0
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q "$@" >/dev/null; then
    if [ "$updated" = 0 ]; then apt-get update -q >/dev/null; updated=1; fi
    apt-get install -y -q "$@" >/dev/null
  fi
}
admin_url() { echo "${DATABASE_URL%/*}/postgres"; }
pg_up() { psql "$(admin_url)" -Atqc 'select 1' >/dev/null 2>&1; }

# --- PostgreSQL -----------------------------------------------------------------------------
if ! command -v psql >/dev/null; then
  say "installing the PostgreSQL client"; apt_install postgresql-client
fi
if ! pg_up; then
  say "PostgreSQL not reachable at $(admin_url): installing and starting a local one"
  apt_install postgresql
  ver=$(ls /etc/postgresql | sort -n | tail -1)
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  if ! pg_up; then
    # A fresh Debian cluster uses peer auth on the socket; allow local trust for the app's URL.
    hba=/etc/postgresql/$ver/main/pg_hba.conf
    sed -i -E 's/^(host\s+all\s+all\s+127\.0\.0\.1\/32\s+)\S+/\1trust/; s/^(local\s+all\s+postgres\s+)\S+/\1trust/' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$ver" main reload
    for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  fi
  pg_up || { echo "PostgreSQL is still not reachable at $(admin_url)" >&2; exit 1; }
fi
if [ "$(psql "$(admin_url)" -Atqc "select count(*) from pg_available_extensions where name = 'postgis'")" = 0 ]; then
  major=$(psql "$(admin_url)" -Atqc "select current_setting('server_version_num')::int / 10000")
  say "installing PostGIS for PostgreSQL $major"
  apt_install "postgresql-$major-postgis-3"
fi

# --- Redis ----------------------------------------------------------------------------------
redis_host=$(echo "$REDIS_URL" | sed -E 's#^redis://([^:/@]*@)?([^:/]+).*#\2#')
redis_port=$(echo "$REDIS_URL" | sed -nE 's#^redis://[^/]*:([0-9]+).*#\1#p'); redis_port=${redis_port:-6379}
redis_up() { (exec 3<>"/dev/tcp/$redis_host/$redis_port" && printf 'PING\r\n' >&3 && read -r -t 2 reply <&3 && [[ $reply == +PONG* ]]) 2>/dev/null; }
if ! redis_up; then
  say "Redis not reachable at $redis_host:$redis_port: installing and starting a local one"
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$redis_port" --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ansim.log
  for _ in $(seq 1 30); do redis_up && break; sleep 0.5; done
  redis_up || { echo "Redis is still not reachable" >&2; exit 1; }
fi

# --- Browser (tests only) -------------------------------------------------------------------
if [ "$want_browser" = 1 ] && ! command -v chromium >/dev/null; then
  say "installing Debian's chromium for the browser tests"
  apt_install chromium
fi
# Hangul glyphs: the console, the app and the maps are Korean first; without a Korean font
# chromium draws boxes in the browser tests' screenshots (docs/img/).
if [ "$want_browser" = 1 ] && [ ! -d /usr/share/fonts/truetype/nanum ]; then
  say "installing Debian's Nanum fonts (Hangul) for the browser"
  apt_install fonts-nanum
fi

# --- promtool (tests only: checks and unit-tests deploy/prometheus/alerts.yml) ---------------
if [ "$want_browser" = 1 ] && ! command -v promtool >/dev/null; then
  say "installing Debian's prometheus package for promtool (its server is not started)"
  # Debian's postinst starts the server through invoke-rc.d; a policy-rc.d answering 101
  # ("action forbidden") keeps it stopped, so nothing listens on :9090 after the install.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT
    apt_install prometheus
    rm -f "$policy"; trap - EXIT
  else
    apt_install prometheus
  fi
fi

# --- Leaflet and Swagger UI for the pages and /docs (npm, served locally: they work offline) -
if ! command -v npm >/dev/null; then
  say "installing npm (Debian's) for the pages' browser packages"; apt_install npm
fi
lock_stamp=app/web/node_modules/.installed-$(sha256sum app/web/package-lock.json | cut -c1-16)
if [ ! -f "$lock_stamp" ]; then
  say "installing the pages' browser packages (npm ci in app/web)"
  npm ci --prefix app/web --no-audit --no-fund --silent
  touch "$lock_stamp"
fi

# --- Tools the tests run (tests only) -------------------------------------------------------
# Some fault tests start a redis-server of their own; the harness reads processes with ps.
if [ "$want_browser" = 1 ]; then
  command -v redis-server >/dev/null || { say "installing redis-server for the fault tests"; apt_install redis-server; }
  command -v ps >/dev/null || { say "installing procps"; apt_install procps; }
fi

# --- Python ---------------------------------------------------------------------------------
py=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  if ! "$py" -m venv .venv; then
    # Debian's python3 has venv (and ensurepip) in a package of its own.
    rm -rf .venv; say "installing python3-venv"; apt_install python3-venv; "$py" -m venv .venv
  fi
fi
# constraints.txt pins every package to the version the tests last passed with (README:
# "Upgrading dependencies"); pyproject.toml says what we need, the constraints what we run.
stamp=.venv/.installed-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  say "installing Python packages into .venv (pinned by constraints.txt)"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -c constraints.txt -e '.[dev]'
  rm -f .venv/.installed-*; touch "$stamp"
fi
say "ready"
