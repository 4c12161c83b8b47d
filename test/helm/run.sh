#!/usr/bin/env bash
# The Helm chart's tests (npm run test:helm): installs what the renderer needs
# when missing (Go, Sprig and sigs.k8s.io/yaml from Debian; idempotent), builds
# the renderer, checks that the values table and schema are current, and runs
# test/helm/chart.test.mjs.
set -euo pipefail
cd "$(dirname "$0")/../.."

need=()
command -v go >/dev/null 2>&1 || need+=(golang-go)
[ -d /usr/share/gocode/src/github.com/Masterminds/sprig ] || need+=(golang-github-masterminds-sprig-dev)
[ -d /usr/share/gocode/src/sigs.k8s.io/yaml ] || need+=(golang-k8s-sigs-yaml-dev)
if [ "${#need[@]}" -gt 0 ]; then
  echo "test:helm: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}"
fi

# the tests load the built CLI config and packages
[ -f cmd/distribustream/dist/config.js ] || npm run build

bin="$(mktemp -d)/render"
(cd test/helm/render && GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= go build -o "$bin" .)
node deploy/helm/values-docs.mjs --check
DS_HELM_RENDER="$bin" node --test test/helm/chart.test.mjs
