#!/usr/bin/env bash
# `npm run test:compose`: docker-compose.yml with a real Docker engine, end to end.
#  1. installs docker.io, docker-compose and debootstrap when missing; starts dockerd in
#     the background when no engine answers (and stops that one, by its PID, at the end);
#  2. builds local stand-ins of the base images when they cannot be pulled
#     (test/compose/stand-ins.sh; cached in the engine across runs);
#  3. validates the compose file, builds the image, then runs test/compose/compose.test.mjs
#     (up, health, downloads from the host, live decode, dashboard, a tracker killed, Redis
#     restarted, a seeder without credential refused, keys kept, down -v);
#  4. `down -v` whatever happens.
# The stack is reached only on ports published on 127.0.0.1 and on the compose network the
# test creates. Figures (build times, image size, up to healthy) are printed as "# figure".
# Env: TRACKER_PORT, DASHBOARD_PORT, SEEDER_PORT (default 26086, 26087, 28000: apart from a
#      stack a developer runs), COMPOSE_PROJECT_NAME (dstest), KEEP=1 leaves the stack up (and
#      the engine running) for a look. Needs `npm run build` first (the host's dsclient).
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { echo "# compose test: $*"; }
started_dockerd=""
log_dir=$(mktemp -d /tmp/ds-compose-test.XXXXXX)

# --- 1. tools and engine
need=()
command -v docker >/dev/null 2>&1 || need+=(docker.io)
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || need+=(docker-compose)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
if [ "${#need[@]}" -gt 0 ]; then
  say "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${need[@]}" | sort -u) >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  say "no engine answers: starting dockerd (log $log_dir/dockerd.log)"
  dockerd >"$log_dir/dockerd.log" 2>&1 &
  started_dockerd=$!
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$started_dockerd" 2>/dev/null || {
      tail -20 "$log_dir/dockerd.log"
      exit 1
    }
    sleep 1
  done
  docker info >/dev/null
fi

if docker compose version >/dev/null 2>&1; then
  COMPOSE="docker compose"
else
  COMPOSE="docker-compose"
fi
export COMPOSE

# the test's own project, on loopback, on ports apart from a stack a developer may run
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-dstest}
export DS_BIND_ADDRESS=127.0.0.1
export DS_PUBLIC_HOST=localhost
export TRACKER_PORT=${TRACKER_PORT:-26086}
export DASHBOARD_PORT=${DASHBOARD_PORT:-26087}
export SEEDER_PORT=${SEEDER_PORT:-28000}
export DS_IMAGE=${DS_IMAGE:-distribustream:compose-test}

finish() {
  local rc=$?
  if [ -z "${KEEP:-}" ]; then
    $COMPOSE down -v --remove-orphans >/dev/null 2>&1 || true
    if [ -n "$started_dockerd" ]; then
      say "stopping the dockerd this test started (pid $started_dockerd)"
      kill "$started_dockerd" 2>/dev/null || true
      for _ in $(seq 1 30); do kill -0 "$started_dockerd" 2>/dev/null || break; sleep 1; done
    fi
    rm -rf "$log_dir"
  else
    say "KEEP=1: the stack stays up (project $COMPOSE_PROJECT_NAME); logs in $log_dir"
  fi
  exit $rc
}
trap finish EXIT

# --- 2. base images
t0=$(date +%s)
bash test/compose/stand-ins.sh
say "base images ready in $(($(date +%s) - t0)) s"

# --- 3. validate, build, test
$COMPOSE config -q
say "$COMPOSE config: valid"
$COMPOSE down -v --remove-orphans >/dev/null 2>&1 || true # a stack left by a run that was killed

t0=$(date +%s)
$COMPOSE build keys >"$log_dir/build.log" 2>&1 || {
  tail -40 "$log_dir/build.log"
  exit 1
}
build_s=$(($(date +%s) - t0))
size=$(docker image inspect -f '{{.Size}}' "$DS_IMAGE")
echo "# figure: image build ${build_s} s (one build; the other services reuse it)"
echo "# figure: image size $((size / 1000000)) MB ($DS_IMAGE, on base $(docker image inspect -f '{{.Size}}' node:20-bookworm-slim | awk '{printf "%d MB", $1/1e6}'))"

node --test --test-concurrency=1 test/compose/compose.test.mjs
