#!/usr/bin/env bash
# Build the hwnas image with podman where no image registry is reachable (no base image to pull).
#
#   bash deploy/build-image.sh                  # -> localhost/hwnas:latest (HWNAS_IMAGE to change)
#   source deploy/build-image.sh --env-only     # only set CONTAINERS_CONF and PODMAN for your own podman calls
#
# 1. A Debian bookworm base (python3, venv, CA certificates) made from Debian's packages by mmdebstrap and
#    imported into podman as localhost/debian-base:bookworm (once; about 25 s).
# 2. A build context of the project's files (tracked and untracked-but-not-ignored: no .venv, no data),
#    plus torch's wheel from TORCH_WHEEL (default: this machine's CPU build in /opt/wheels), so that pip
#    inside takes that torch and never another.
# 3. `podman build --network host` of deploy/Containerfile on that base; pip inside reaches the package
#    registry through the host's network. A host behind a TLS-inspecting proxy passes its CA bundle
#    (PIP_CA, default /etc/ssl/certs/ca-certificates.crt when present) as a build-time mount: pip reads it,
#    the image does not keep it.
#
# podman runs with `--runtime runc --cgroup-manager=cgroupfs` and a containers.conf with `default_ulimits = []`
# (crun fails on this kind of host on rlimits and hybrid cgroups); the conf is written to the build folder and
# named by CONTAINERS_CONF, so /etc is left alone. Needs: podman, runc, mmdebstrap (Debian's packages).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
IMAGE="${HWNAS_IMAGE:-localhost/hwnas:latest}"
BASE_IMAGE="${HWNAS_BASE_IMAGE:-localhost/debian-base:bookworm}"
WORK="${HWNAS_BUILD_DIR:-${TMPDIR:-/tmp}/hwnas-image-build}"
mkdir -p "$WORK"
cat > "$WORK/containers.conf" <<'CONF'
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
export CONTAINERS_CONF="$WORK/containers.conf"
PODMAN=(podman --runtime runc --cgroup-manager=cgroupfs)
if [ "${1:-}" = "--env-only" ]; then
  return 0 2>/dev/null || exit 0
fi

for tool in podman runc mmdebstrap; do
  command -v "$tool" >/dev/null || { echo "build-image: $tool is missing; install Debian's podman, runc and mmdebstrap" >&2; exit 3; }
done

if ! "${PODMAN[@]}" image exists "$BASE_IMAGE"; then
  echo "build-image: making $BASE_IMAGE with mmdebstrap" >&2
  mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$WORK/base.tar"
  "${PODMAN[@]}" import "$WORK/base.tar" "$BASE_IMAGE" >/dev/null
  rm -f "$WORK/base.tar"
fi

CONTEXT="$WORK/context"
rm -rf "$CONTEXT" && mkdir -p "$CONTEXT"
(cd "$REPO" && git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - 2>/dev/null) \
  | tar -xf - -C "$CONTEXT"
mkdir -p "$CONTEXT/deploy/wheels"
TORCH_WHEEL="${TORCH_WHEEL:-$(ls /opt/wheels/torch-2.13.0+cpu-*.whl 2>/dev/null | head -n 1 || true)}"
if [ -n "$TORCH_WHEEL" ]; then
  cp "$TORCH_WHEEL" "$CONTEXT/deploy/wheels/"
fi

BUILD=("${PODMAN[@]}" build --network host -f deploy/Containerfile --build-arg "BASE=$BASE_IMAGE" -t "$IMAGE")
PIP_CA="${PIP_CA:-$( [ -f /etc/ssl/certs/ca-certificates.crt ] && echo /etc/ssl/certs/ca-certificates.crt || true)}"
if [ -n "$PIP_CA" ]; then
  BUILD+=(--volume "$PIP_CA:/run/hwnas-build-ca.crt:ro" --build-arg "PIP_CA=/run/hwnas-build-ca.crt")
fi
(cd "$CONTEXT" && "${BUILD[@]}" .)
echo "build-image: built $IMAGE" >&2
