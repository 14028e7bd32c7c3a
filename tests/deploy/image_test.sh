#!/bin/sh
# What this machine can check of the container image without building it (make image
# builds it with podman or buildah): its runtime packages are exactly those the binaries
# load, `make dist` installs the three programs and they run, and the Containerfile's
# build stage is the Makefile's own target, its user non-root, its health check the CLI's.
#   image_test.sh REPO_ROOT BUILD_DIR
set -eu
root=$1
build=$2
image=$root/deploy/image
fail() { echo "FAIL: $*" >&2; exit 1; }

# Every shared library the programs load comes from a listed package, and every listed
# package provides one (the list stays what the image needs, no more).
needed=$(for program in fleettwin-node fleettwin fleettwin-sim; do
  [ -x "$build/$program" ] || fail "$build/$program is not built"
  ldd "$build/$program" | awk '/=>/ { print $3 }'
done | sort -u | while read -r library; do
  package=$(dpkg -S "$library" 2>/dev/null || dpkg -S "$(readlink -f "$library")" 2>/dev/null) ||
    fail "no Debian package provides $library"
  echo "${package%%:*}"
done | sort -u)
listed=$(grep -v '^#' "$image/runtime-packages" | sort -u)
if [ "$needed" != "$listed" ]; then
  echo "deploy/image/runtime-packages differs from what the binaries load:" >&2
  printf '%s\n' "$needed" > "${TMPDIR:-/tmp}/needed.$$"
  printf '%s\n' "$listed" | diff - "${TMPDIR:-/tmp}/needed.$$" >&2 || true
  rm -f "${TMPDIR:-/tmp}/needed.$$"
  fail "update deploy/image/runtime-packages (lines with > are missing, < are not needed)"
fi
echo "runtime packages: $(echo "$listed" | wc -l) cover every library of the three programs"

# What `make dist` installs (its last step), as the image holds it.
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
for program in fleettwin-node fleettwin fleettwin-sim; do
  "$prefix/bin/$program" --help >/dev/null || fail "$program --help failed"
done
for file in models.toml aggregates.toml; do
  [ -f "$prefix/share/fleettwin/$file" ] || fail "share/fleettwin/$file not installed"
done
echo "installed: $(ls "$prefix/bin" | tr '\n' ' ')"

# The Containerfile builds with the Makefile's targets and runs as a non-root user.
containerfile=$image/Containerfile
grep -q '^RUN make dist ' "$containerfile" || fail "the build stage does not run make dist"
make -s -n -C "$root" dist BUILD="$build" >/dev/null || fail "make dist is no target"
grep -q '^USER 10001:10001$' "$containerfile" || fail "the image does not run as user 10001"
grep -q 'CMD \["fleettwin", "--timeout", "3", "health"\]' "$containerfile" ||
  fail "the health check is not fleettwin health"
sh -n "$image/build.sh" || fail "deploy/image/build.sh does not parse"
echo "Containerfile: build stage make dist, user 10001, health check fleettwin health"
