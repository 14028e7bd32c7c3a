#!/bin/sh
# Builds FleetTwin's container image (deploy/image/Containerfile) with podman, or with
# buildah; installs podman from Debian when neither is there. Run from anywhere:
#   IMAGE=localhost/fleettwin:0.1.0 deploy/image/build.sh
# BASE (default docker.io/library/debian:bookworm) is the Debian image both stages start
# from. Where no container registry can be reached (only Debian's package mirror), the
# base is bootstrapped from that mirror with debootstrap instead, as localhost/debian:bookworm.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
image=${IMAGE:-localhost/fleettwin:0.1.0}
base=${BASE:-docker.io/library/debian:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo

install() {
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "$@"
}

if command -v podman >/dev/null 2>&1; then
  engine=podman
elif command -v buildah >/dev/null 2>&1; then
  engine=buildah
else
  echo "build-image: neither podman nor buildah found; installing podman from Debian" >&2
  install podman runc
  engine=podman
fi

# The base image: pulled, or bootstrapped from Debian's mirror when no registry answers.
if ! $sudo $engine image exists "$base" 2>/dev/null && ! $sudo $engine pull "$base"; then
  local_base=localhost/debian:bookworm
  if ! $sudo $engine image exists "$local_base" 2>/dev/null; then
    echo "build-image: cannot pull $base; bootstrapping $local_base from $mirror" >&2
    command -v debootstrap >/dev/null 2>&1 || install debootstrap
    rootfs=$(mktemp -d)
    trap '$sudo rm -rf "$rootfs"' EXIT
    $sudo debootstrap --variant=minbase bookworm "$rootfs" "$mirror"
    $sudo rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
    $sudo tar -C "$rootfs" -c . | $sudo $engine import - "$local_base"
  fi
  base=$local_base
fi

# Engines that cannot raise resource limits (no CAP_SYS_RESOURCE, as in some sandboxes)
# fail to start a build step with their defaults (1048576 open files); ask for what this
# machine allows instead.
limits=""
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt 1048576 ]; then
  limits="--ulimit nofile=$(ulimit -Hn):$(ulimit -Hn) --ulimit nproc=4096:4096"
fi

# crun, podman's default runtime on Debian, refuses hosts with cgroups v1 in hybrid mode;
# runc runs there too, so it is taken when present (RUNTIME overrides).
runtime=${RUNTIME:-}
if [ -z "$runtime" ] && command -v runc >/dev/null 2>&1; then
  runtime=runc
fi
runtime_flag=""
[ -z "$runtime" ] || runtime_flag="--runtime $runtime"

echo "build-image: $engine building $image from $base" >&2
case $engine in
  podman)
    # docker format: OCI images have no HEALTHCHECK.
    $sudo podman build --format docker --network host $runtime_flag $limits --build-arg "BASE=$base" \
      -f "$root/deploy/image/Containerfile" -t "$image" "$root" ;;
  buildah)
    $sudo buildah bud --format docker --network host $runtime_flag $limits --build-arg "BASE=$base" \
      -f "$root/deploy/image/Containerfile" -t "$image" "$root" ;;
esac
echo "build-image: built $image" >&2
