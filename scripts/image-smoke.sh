#!/usr/bin/env bash
# Builds the image and runs it against this machine's PostgreSQL and Redis: `db upgrade`, the API
# and a dispatcher from the image, a member made with the image's CLI, an SOS through the API,
# and the dispatcher's work on it checked in the database. As root, on Debian (`make image-smoke`).
#
# No image registry is needed: the base image is a minimal Debian made here with debootstrap from
# this machine's apt mirror (cached in .cache/debootstrap/) and `docker import`ed. Builds and
# containers use the host's network only; a dockerd this script starts has no bridge and writes no
# iptables rules, so nothing gets a private-range address.
#
# Idempotent: docker.io and debootstrap are installed only when missing, a running dockerd is used
# as it is (one this script starts is stopped at the end, by its PID), the base image and the
# build cache are reused. It stops and removes the containers it started, and nothing else.
# Every step is bounded in time.
#
#   SMOKE_DATABASE_URL  default postgresql://postgres@127.0.0.1:5432/ansim_image (created if missing)
#   SMOKE_REDIS_URL     default redis://127.0.0.1:6379/3
#   IMAGE               default ansim:smoke          BASE_IMAGE  default ansim-base:bookworm
#   SMOKE_NO_CACHE=1    build without the layer cache (a cold build's time)
set -euo pipefail
cd "$(dirname "$0")/.."

SMOKE_DATABASE_URL=${SMOKE_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/ansim_image}
SMOKE_REDIS_URL=${SMOKE_REDIS_URL:-redis://127.0.0.1:6379/3}
IMAGE=${IMAGE:-ansim:smoke}
BASE_IMAGE=${BASE_IMAGE:-ansim-base:bookworm}
SUITE=bookworm
CACHE=.cache/debootstrap
BASE_TAR=$CACHE/$SUITE-minbase.tar
LOGS=artifacts/image-smoke
mkdir -p "$CACHE" "$LOGS"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
fail() { printf '\033[1;31mFAIL: %s\033[0m\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "run as root (apt, dockerd, debootstrap)"

# Everything started here, stopped on any exit (by id, nothing else).
containers=()
dockerd_pid=""
cleanup() {
  local rc=$?
  set +e
  for c in "${containers[@]}"; do
    docker logs "$c" >"$LOGS/${c:0:12}.log" 2>&1
    docker rm -f "$c" >/dev/null 2>&1
  done
  if [ -n "$dockerd_pid" ]; then
    say "stopping the dockerd this script started (pid $dockerd_pid)"
    kill -TERM "$dockerd_pid" 2>/dev/null
    for _ in $(seq 1 60); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$dockerd_pid" 2>/dev/null && kill -KILL "$dockerd_pid"
  fi
  [ "$rc" = 0 ] || echo "container logs: $LOGS/" >&2
  exit "$rc"
}
trap cleanup EXIT

# --- docker.io and debootstrap --------------------------------------------------------------
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d answering 101 keeps the package's own dockerd from starting (we start ours).
  policy=/usr/sbin/policy-rc.d; own_policy=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; own_policy=1; fi
  timeout 900 apt-get install -y -q "${missing[@]}" >/dev/null \
    || { timeout 300 apt-get update -q >/dev/null; timeout 900 apt-get install -y -q "${missing[@]}" >/dev/null; }
  [ "$own_policy" = 1 ] && rm -f "$policy"
fi

# --- dockerd --------------------------------------------------------------------------------
if ! timeout 20 docker info >/dev/null 2>&1; then
  say "starting dockerd (no bridge, no iptables rules, host network only)"
  if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    rm -f /var/run/docker.pid  # left by a dockerd that died
  fi
  dockerd --bridge=none --iptables=false --ip-masq=false --ip-forward=false \
    --data-root /var/lib/docker >"$LOGS/dockerd.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 1 60); do timeout 5 docker info >/dev/null 2>&1 && break; sleep 1; done
  timeout 5 docker info >/dev/null 2>&1 || fail "dockerd did not come up (see $LOGS/dockerd.log)"
fi

# --- the base image: a minimal Debian from this machine's mirror -----------------------------
# The first URI of the machine's apt sources that is not the security archive.
apt_uris() {
  { grep -hsE '^\s*URIs:' /etc/apt/sources.list.d/*.sources | awk '{for (i = 2; i <= NF; i++) print $i}'
    grep -hsE '^\s*deb\s' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
      | sed -E 's/^\s*deb\s+(\[[^]]*\]\s+)?(\S+).*/\2/'; } | grep -E '^https?://' || true
}
mirror=$(apt_uris | grep -v security | head -1 || true); mirror=${mirror:-http://deb.debian.org/debian}
security=$(apt_uris | grep security | head -1 || true)
security=${security:-http://deb.debian.org/debian-security}

if timeout 20 docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  say "base image $BASE_IMAGE is there (reused)"
else
  if [ ! -s "$BASE_TAR" ]; then
    say "debootstrap --variant=minbase $SUITE from $mirror (a few minutes, once)"
    root=$CACHE/$SUITE-rootfs
    rm -rf "$root"
    timeout 1200 debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$root" "$mirror" \
      >"$LOGS/debootstrap.log" 2>&1 || fail "debootstrap failed (see $LOGS/debootstrap.log)"
    cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror $SUITE main
deb $mirror $SUITE-updates main
deb $security $SUITE-security main
EOF
    # The machine's own CA certificates (a network that inspects TLS has its CA there), so that
    # pip and npm in the build trust what this machine trusts.
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
      cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
      chroot "$root" update-ca-certificates >/dev/null
    fi
    # Slim, as Debian's own -slim images are: no documentation, manual pages or translations,
    # now or from packages installed later (the copyright files stay).
    printf 'path-exclude /usr/share/%s\n' 'doc/*' 'man/*' 'info/*' 'groff/*' 'lintian/*' 'locale/*' \
      >"$root/etc/dpkg/dpkg.cfg.d/slim"
    echo 'path-include /usr/share/doc/*/copyright' >>"$root/etc/dpkg/dpkg.cfg.d/slim"
    find "$root/usr/share/doc" -mindepth 1 -not -type d -not -name copyright -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$root"/usr/share/{man,info,groff,lintian,locale}/*
    chroot "$root" apt-get clean
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log
    tar -C "$root" --numeric-owner -cf "$BASE_TAR.tmp" . && mv "$BASE_TAR.tmp" "$BASE_TAR"
    rm -rf "$root"
  fi
  say "docker import $BASE_TAR as $BASE_IMAGE"
  timeout 300 docker import --change 'CMD ["bash"]' "$BASE_TAR" "$BASE_IMAGE" >/dev/null
fi

# --- the build ------------------------------------------------------------------------------
say "building $IMAGE from $BASE_IMAGE"
build_args=(--network host --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$IMAGE")
[ "${SMOKE_NO_CACHE:-0}" = 1 ] && build_args+=(--no-cache)
started=$(date +%s)
# The classic builder: it takes --network host as it is (BuildKit wants an entitlement for it).
DOCKER_BUILDKIT=0 timeout 2400 docker build "${build_args[@]}" . >"$LOGS/build.log" 2>&1 \
  || { tail -30 "$LOGS/build.log" >&2; fail "docker build failed (see $LOGS/build.log)"; }
build_s=$(($(date +%s) - started))
size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
say "built in ${build_s}s; image size $((size / 1000000)) MB ($size bytes)"

# --- run it ---------------------------------------------------------------------------------
scripts/ensure_db.sh "$SMOKE_DATABASE_URL"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
api=http://127.0.0.1:$port
run_env=(--network host -e "DATABASE_URL=$SMOKE_DATABASE_URL" -e "REDIS_URL=$SMOKE_REDIS_URL"
  -e ANSIM_ENVIRONMENT=development -e "ANSIM_PUBLIC_BASE_URL=$api")

say "db upgrade (from the image)"
timeout 300 docker run --rm "${run_env[@]}" "$IMAGE" db upgrade >"$LOGS/db-upgrade.log" 2>&1 \
  || { cat "$LOGS/db-upgrade.log" >&2; fail "db upgrade failed"; }

say "starting the API (127.0.0.1:$port) and a dispatcher from the image"
containers+=("$(docker run -d --name "ansim-smoke-api-$$" "${run_env[@]}" "$IMAGE" \
  serve --host 127.0.0.1 --port "$port")")
containers+=("$(docker run -d --name "ansim-smoke-dispatcher-$$" "${run_env[@]}" "$IMAGE" dispatcher)")
for _ in $(seq 1 60); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$api/readyz")" = 200 ] && break
  sleep 1
done
curl -sf --max-time 5 "$api/readyz" >/dev/null || fail "the API is not ready at $api/readyz"
[ "$(docker inspect -f '{{.State.Running}}' "${containers[1]}")" = true ] || fail "the dispatcher exited"
[ "$(docker exec "${containers[0]}" id -u)" != 0 ] || fail "the image runs as root"

say "a member (ansim members create --json, from the image) with a guardian"
phone=+8210$(python3 -c 'import random; print(random.randrange(10**7, 10**8))')
member=$(timeout 120 docker run --rm "${run_env[@]}" "$IMAGE" \
  members create --phone "$phone" --name "Image Smoke" --pin 2468 --json)
token=$(printf '%s' "$member" | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
auth=(-H "Authorization: Bearer $token" -H 'content-type: application/json')
# A guardian to text: the API then leaves the routing to a dispatcher (docs/dispatch.md).
code=$(curl -s -o "$LOGS/guardian.json" -w '%{http_code}' --max-time 10 "${auth[@]}" \
  -d '{"name": "Smoke Guardian", "phone": "+821000000000"}' "$api/v1/me/guardians")
[ "$code" = 201 ] || fail "adding a guardian answered $code: $(cat "$LOGS/guardian.json")"

say "an SOS through the API"
alert_id=$(python3 -c 'import uuid; print(uuid.uuid4())')
sos='{"client_alert_id": "'$alert_id'", "trigger": "button", "location": {"lat": 37.5665, "lon": 126.978, "accuracy_m": 10}}'
code=$(curl -s -o "$LOGS/sos.json" -w '%{http_code}' --max-time 10 "${auth[@]}" -d "$sos" "$api/v1/alerts")
[ "$code" = 201 ] || fail "the SOS answered $code: $(cat "$LOGS/sos.json")"
incident=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["incident_id"])' "$LOGS/sos.json")
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "${auth[@]}" -d "$sos" "$api/v1/alerts")
[ "$code" = 200 ] || fail "the SOS's retry answered $code, not 200 (the same incident)"
code=$(curl -s -o "$LOGS/alert.json" -w '%{http_code}' --max-time 10 "${auth[@]}" "$api/v1/alerts/$incident")
[ "$code" = 200 ] || fail "her view of the alert answered $code"

say "the dispatcher's work on incident $incident"
q() { psql "$SMOKE_DATABASE_URL" -Atqc "$1"; }
routed=0; texted=0
for _ in $(seq 1 60); do
  routed=$(q "SELECT count(*) FROM dispatch_receipt r JOIN outbox o ON o.id = r.outbox_id
              WHERE o.incident_id = '$incident'")
  texted=$(q "SELECT count(*) FROM notification WHERE incident_id = '$incident'
              AND channel = 'sms' AND status = 'sent'")
  [ "$routed" -ge 1 ] && [ "$texted" -ge 1 ] && break
  sleep 0.5
done
events=$(q "SELECT string_agg(kind || ' by ' || actor, ', ' ORDER BY id) FROM incident_event
            WHERE incident_id = '$incident'")
echo "    timeline: $events"
[ "$routed" -ge 1 ] || fail "no dispatcher routed the incident (no dispatch_receipt)"
[[ $events == *"routed by dispatch"* ]] || fail "the timeline has no routed event"
[ "$texted" -ge 1 ] || fail "the dispatcher did not send the guardian's text"

say "PASS: image $IMAGE, $((size / 1000000)) MB, built in ${build_s}s; SOS 201, retry 200, view 200; routed and texted by the dispatcher"
