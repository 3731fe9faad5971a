#!/bin/sh
# Make the `debian:bookworm-slim` image locally, for machines that reach Debian's mirror but no
# container registry: mmdebstrap builds a minimal bookworm from the system's apt sources, podman
# imports it under the name the Dockerfiles use, so `FROM debian:bookworm-slim` resolves with
# --pull=never. Like the official slim image: no manuals, docs or locales; apt lists cleaned.
# Needs root (or a user namespace mmdebstrap can use), mmdebstrap and podman.
set -eu
name=docker.io/library/debian:bookworm-slim
if podman image exists "$name"; then
  echo "$name is here already"
  exit 0
fi
sources=${DEBIAN_SOURCES:-/etc/apt/sources.list.d/debian.sources}
[ -f "$sources" ] || sources=/etc/apt/sources.list
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mmdebstrap --variant=minbase --quiet \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  bookworm "$work/rootfs.tar" "$sources" > "$work/mmdebstrap.log" 2>&1 \
  || { tail -30 "$work/mmdebstrap.log" >&2; exit 1; }
podman import --change 'CMD ["bash"]' "$work/rootfs.tar" "$name" >/dev/null
echo "made $name from $sources"
