#!/bin/bash
# Build the container images with podman, reusing what is up to date:
#   localhost/kefu-billing:latest     infra/Dockerfile (rebuilt when its inputs change)
#   docker.io/library/debian:bookworm-slim and docker.io/library/postgres:15
#                                     made locally when missing (no registry is needed:
#                                     infra/local-images/)
# Called by `make image` (fails on any error) and by `make test` as
#   infra/build-images.sh --or-skip FILE
# which never fails: when podman cannot build or run here it writes why to FILE, says so, and
# exits 0 (the compose test then skips with that reason).
#
# Settings: BUILD_DIR (default .build), EXTRA_CA_CERTS (a PEM file of extra CA certificates for
# a TLS-intercepting proxy; default: the machine's /usr/local/share/ca-certificates/*.crt),
# KEFU_IMAGE (default localhost/kefu-billing:latest).
set -euo pipefail
cd "$(dirname "$0")/.."

skip_file=
if [ "${1:-}" = --or-skip ]; then
  skip_file=$2
fi
build_dir=${BUILD_DIR:-.build}
image=${KEFU_IMAGE:-localhost/kefu-billing:latest}
mkdir -p "$build_dir"

skip() {
  if [ -z "$skip_file" ]; then
    echo "error: $1" >&2
    exit 1
  fi
  echo "$1" > "$skip_file"
  echo "containers: SKIPPED, $1 (the compose test skips with this reason)"
  exit 0
}
trap 'skip "infra/build-images.sh stopped at line $LINENO"' ERR

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi
}

# 1. The tools, from Debian, when missing.
tools="podman buildah mmdebstrap runc uidmap fuse-overlayfs slirp4netns"
missing=
for tool in podman buildah mmdebstrap runc newuidmap fuse-overlayfs slirp4netns; do
  command -v "$tool" >/dev/null 2>&1 || missing=yes
done
if [ -n "$missing" ]; then
  echo "containers: installing Debian's $tools (apt-get)"
  as_root apt-get update -qq >/dev/null \
    && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $tools >/dev/null \
    || skip "podman and its helpers could not be installed with apt-get (needs root or sudo)"
fi

# 2. podman's settings for this machine: runc with cgroupfs and explicit ulimits (crun cannot
#    set RLIMIT_NOFILE here); written here, nothing in /etc changes.
nofile=$(ulimit -Hn)
[ "$nofile" = unlimited ] && nofile=1048576
cat > "$build_dir/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
EOF
export CONTAINERS_CONF="$PWD/$build_dir/containers.conf"
export BUILDAH_FORMAT=docker  # keeps HEALTHCHECK (the OCI format drops it)
podman info >/dev/null 2>&1 || skip "podman cannot run here: $(podman info 2>&1 | tail -1)"

seconds() { echo "$EPOCHREALTIME"; }
took() { awk -v from="$1" -v to="$EPOCHREALTIME" 'BEGIN { printf "%.1f s", to - from }'; }

# 3. The base image and the postgres:15 stand-in, made locally when missing.
started=$(seconds)
if ! podman image exists docker.io/library/debian:bookworm-slim; then
  infra/local-images/debian-bookworm-slim.sh \
    || skip "the debian:bookworm-slim base could not be made with mmdebstrap"
  echo "containers: debian:bookworm-slim made in $(took "$started")"
fi
if ! podman image exists docker.io/library/postgres:15; then
  started=$(seconds)
  podman build --pull=never --network host --quiet \
    -t docker.io/library/postgres:15 infra/local-images/postgres >/dev/null \
    || skip "the postgres:15 stand-in image could not be built"
  echo "containers: postgres:15 stand-in built in $(took "$started")"
fi

# 4. The application image, when its inputs changed (a hash of them is kept as a label).
inputs=(infra/Dockerfile infra/Dockerfile.dockerignore pyproject.toml uv.lock README.md
        plans service webhooks)
if git rev-parse --git-dir >/dev/null 2>&1; then
  files=$(git ls-files -co --exclude-standard -- "${inputs[@]}" | sort)
else
  files=$(find "${inputs[@]}" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' | sort)
fi
base_id=$(podman image inspect --format '{{.Id}}' docker.io/library/debian:bookworm-slim)
wanted=$( { echo "$base_id"; echo "$files" | xargs -d '\n' sha256sum; } | sha256sum | cut -c1-32)
current=$(podman image inspect --format '{{index .Labels "dev.kefu-billing.inputs"}}' "$image" \
  2>/dev/null || true)
if [ "$current" = "$wanted" ]; then
  echo "containers: $image is up to date (inputs $wanted)"
else
  secret=()
  extra_ca="$build_dir/extra-ca.pem"
  if [ -n "${EXTRA_CA_CERTS:-}" ]; then
    cp "$EXTRA_CA_CERTS" "$extra_ca"
  else
    cat /usr/local/share/ca-certificates/*.crt > "$extra_ca" 2>/dev/null || : > "$extra_ca"
  fi
  [ -s "$extra_ca" ] && secret=(--secret "id=extra_ca,src=$extra_ca")
  started=$(seconds)
  podman build --pull=never --network host --layers \
    --ignorefile infra/Dockerfile.dockerignore -f infra/Dockerfile \
    --label "dev.kefu-billing.inputs=$wanted" "${secret[@]}" \
    -t "$image" . > "$build_dir/image-build.log" 2>&1 \
    || skip "podman build failed: $(tail -3 "$build_dir/image-build.log" | tr '\n' ' ')"
  echo "containers: $image built in $(took "$started") (log: $build_dir/image-build.log)"
fi
size=$(podman image inspect --format '{{.Size}}' "$image")
echo "containers: $image is $((size / 1000000)) MB"
[ -n "$skip_file" ] && rm -f "$skip_file"
exit 0
