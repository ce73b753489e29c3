#!/usr/bin/env bash
# Builds the sipdata and Kamailio images where no container registry is reachable:
# a base made from Debian's packages (mmdebstrap), the project's wheels made on the
# host (which reaches the package index), then the project's Dockerfiles on that
# base with podman. Idempotent: the base is made once. docs/operations.md, "Images".
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=${SIPDATA_IMAGE_BASE:-localhost/sipdata-base:bookworm}
IMAGE=${SIPDATA_IMAGE:-localhost/sipdata:dev}
KAMAILIO_IMAGE=${KAMAILIO_IMAGE:-localhost/sipdata-kamailio:dev}
# vfs and chroot: this sandbox has neither overlay mounts nor user namespaces for crun.
PODMAN=(podman --storage-driver vfs)

need=()
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v podman >/dev/null || need+=(podman)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

mkdir -p build
if ! "${PODMAN[@]}" image exists "$BASE"; then
    echo "making $BASE from Debian's packages"
    mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm build/base.tar
    "${PODMAN[@]}" import --quiet build/base.tar "$BASE" >/dev/null
    rm -f build/base.tar
fi

# Wheels for the base's own Python, whose version is read from the base itself.
# pip's --python-version does not reach python_full_version markers, and redis-py
# needs async-timeout below 3.11.3 (Debian's is 3.11.2): named here. Anything else
# missing fails the build's offline install, loudly.
root=$("${PODMAN[@]}" image mount "$BASE")
version=$(chroot "$root" python3 -c 'import platform; print(platform.python_version())')
"${PODMAN[@]}" image unmount "$BASE" >/dev/null
rm -rf build/wheels
.venv/bin/pip wheel --quiet --no-deps --wheel-dir build/wheels .
if ! out=$(.venv/bin/pip download --quiet --only-binary=:all: --python-version "$version" \
    --dest build/wheels build/wheels/sipdata-*.whl 'async-timeout>=4.0.3' 2>&1); then
    echo "$out" >&2
    exit 1
fi
# An interrupted build leaves buildah's working containers behind (`podman ps`
# lists them only with --external); they hold their images and fail the prune.
"${PODMAN[@]}" ps --all --external --format '{{.ID}} {{.Names}}' |
    awk '$2 ~ /-working-container$/ {print $1}' |
    xargs --no-run-if-empty "${PODMAN[@]}" rm --force >/dev/null
# docker format: OCI images drop the Dockerfile's HEALTHCHECK.
"${PODMAN[@]}" build --quiet --format docker --isolation chroot --build-arg "BASE=$BASE" \
    --tag "$IMAGE" . >/dev/null
"${PODMAN[@]}" build --quiet --format docker --isolation chroot --build-arg "BASE=$BASE" \
    --file deploy/kamailio.Dockerfile --tag "$KAMAILIO_IMAGE" . >/dev/null
"${PODMAN[@]}" image prune --force >/dev/null  # the build stage and replaced builds
echo "built $IMAGE and $KAMAILIO_IMAGE on $BASE"
