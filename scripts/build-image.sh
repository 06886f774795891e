#!/usr/bin/env bash
# `make image`: the project's container image from the Dockerfile, without a Docker engine, as an
# OCI archive that `ctr -n k8s.io images import` loads under the chart's default reference
# (image.repository:appVersion), cached in $TOOLS_DIR:
#   $TOOLS_DIR/image-base-<key>/base.tar     the Dockerfile's BASE: a debootstrap of bookworm
#                                           (tools/image/debian-base.sh; <key> hashes the recipe)
#   $TOOLS_DIR/image-<key>/forensic-checkpoint.tar   <key> hashes every input of the build: the
#                                           Dockerfile, .dockerignore, what it COPYs (pyproject.toml,
#                                           README.md, operator/src, deploy/image), the base's key,
#                                           the reference and this script
#   $TOOLS_DIR/image-current -> image-<key>  (written after a successful build)
# The builder is Debian's buildah (apt): `buildah build --isolation chroot` of the unchanged
# Dockerfile with --build-arg BASE=<the local base>, in a throw-away storage (overlay; set
# IMAGE_STORAGE_DRIVER=vfs where overlay cannot mount). The RUN steps reach Debian's mirror and
# PyPI themselves; the host's CA bundle (and PIP_INDEX_URL, if set) is lent to their pip as
# root's read-only home, a directory every stage already has, so nothing of it enters a layer.
# Root only (buildah and debootstrap). Prints the archive, its digest and its sizes.
#
# Usage: build-image.sh          build what is missing (a no-op when the inputs are unchanged)
#        build-image.sh --check  exit 0 only if the current inputs' archive is cached
set -euo pipefail
TOOLS_DIR=${TOOLS_DIR:-${FORENSIC_TOOLS_DIR:-$HOME/.cache/forensic-checkpoint}}
TOOLS_DIR=$(realpath -m "$TOOLS_DIR")
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
DEV=("$VENV/bin/forensic-checkpoint-dev" image)
export DEBIAN_FRONTEND=noninteractive
begin=$(date +%s)
t() { echo "build-image: $1 in $(($(date +%s) - $2)) s"; }

hash_files() { # paths... : one line per file, name and content hash, in a stable order
    LC_ALL=C sort | while read -r f; do printf '%s %s\n' "$f" "$(sha256sum <"$f" | cut -c1-64)"; done
}
base_key=$(printf '%s\n' tools/image/debian-base.sh tools/node/oci_image.py | hash_files |
    sha256sum | cut -c1-12)
ref=$("$VENV/bin/python" -c 'from forensic_checkpoint_dev.image import reference; print(reference())')
# The build context as .dockerignore lets it through (no bytecode caches, no egg-info).
image_key=$({
    {
        printf '%s\n' Dockerfile .dockerignore pyproject.toml README.md LICENSE hatch_build.py \
            tools/criu_protos.py scripts/build-image.sh
        git ls-files deploy/image operator/src third_party/criu
    } | hash_files
    echo "base $base_key ref $ref"
} | sha256sum | cut -c1-12)
base_dir=$TOOLS_DIR/image-base-$base_key
image_dir=$TOOLS_DIR/image-$image_key
archive=$image_dir/forensic-checkpoint.tar

if [ "${1:-}" = --check ]; then
    [ -s "$archive" ] && [ "$(readlink "$TOOLS_DIR/image-current")" = "image-$image_key" ]
    exit
fi
if [ -s "$archive" ]; then
    ln -sfn "image-$image_key" "$TOOLS_DIR/image-current"
    echo "build-image: cached (inputs $image_key): $archive"
    cat "$image_dir/SIZE"
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    echo "build-image: buildah and debootstrap need root" >&2
    exit 3
fi
is_installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }
missing=()
# runc: tests/install/test_image_archive.py runs the image with it, as the chart would.
for p in buildah debootstrap runc; do is_installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    echo "build-image: apt-get install ${missing[*]}" >&2
    # The lock scripts/build-node-tools.sh takes too: `make -j` (.ci/run) runs both at once, and
    # apt's own lock does not make a second `apt-get update` wait.
    apt=(flock /run/forensic-checkpoint-apt.lock apt-get -qq -o DPkg::Lock::Timeout=600)
    "${apt[@]}" update
    "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null
fi

mkdir -p "$TOOLS_DIR"
work=$(mktemp -d "$TOOLS_DIR/.image-build.XXXXXX")
B=(buildah --root "$work/storage" --runroot "$work/run"
    --storage-driver "${IMAGE_STORAGE_DRIVER:-overlay}")
cleanup() { # buildah's containers, then whatever is still mounted below the work directory
    "${B[@]}" rm --all >/dev/null 2>&1 || true
    "${B[@]}" rmi --all --force >/dev/null 2>&1 || true
    findmnt -rn -o TARGET | grep "^$work/" | sort -r | xargs -r umount -l || true
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT
printf '{"default": [{"type": "insecureAcceptAnything"}]}\n' >"$work/policy.json"
policy=(--signature-policy "$work/policy.json")

# The base, once per recipe (debootstrap: about a minute and a half).
base_name=localhost/forensic-checkpoint-base:bookworm-$base_key
if [ ! -s "$base_dir/base.tar" ]; then
    s=$(date +%s)
    rm -rf "$base_dir.tmp"
    mkdir -p "$base_dir.tmp"
    MIRROR=${MIRROR:-http://deb.debian.org/debian} bash tools/image/debian-base.sh \
        "$work/base-rootfs" "$base_dir.tmp/base.tar" "$base_name" >"$work/base.log" 2>&1 || {
        tail -30 "$work/base.log" >&2
        echo "build-image: the base (tools/image/debian-base.sh) failed" >&2
        exit 1
    }
    rm -rf --one-file-system "$work/base-rootfs" "$base_dir"
    mv "$base_dir.tmp" "$base_dir"
    t "base (debootstrap bookworm minbase, $base_dir)" "$s"
fi
"${B[@]}" pull "${policy[@]}" --quiet "oci-archive:$base_dir/base.tar" >/dev/null

# pip in the RUN steps trusts what this host trusts (a TLS-inspecting proxy's CA, if any).
home=$work/root-home
mkdir -p "$home/.config/pip"
cp /etc/ssl/certs/ca-certificates.crt "$home/build-ca.crt"
{
    echo "[global]"
    echo "cert = /root/build-ca.crt"
    [ -z "${PIP_INDEX_URL:-}" ] || echo "index-url = $PIP_INDEX_URL"
} >"$home/.config/pip/pip.conf"
chmod -R go-w "$home"
chmod 0700 "$home"

s=$(date +%s)
if ! "${B[@]}" build "${policy[@]}" --isolation chroot --pull=never --volume "$home:/root:ro" \
    --build-arg "BASE=$base_name" --tag "$ref" --file Dockerfile . >"$work/build.log" 2>&1; then
    tail -40 "$work/build.log" >&2
    if grep -q "^E: Version '.*' for '.*' was not found" "$work/build.log"; then
        # A pin of the Dockerfile left the mirror (a point release or a security update).
        pins=$(grep -oE '[a-z0-9.+-]+=[0-9][^ ]*' Dockerfile | cut -d= -f1 | sort -u | tr '\n' ' ')
        c=$("${B[@]}" from "${policy[@]}" --pull=never "$base_name")
        echo "build-image: a Dockerfile pin no longer resolves; today's candidates:" >&2
        # shellcheck disable=SC2086 # one word per package
        "${B[@]}" run --isolation chroot "$c" -- sh -c \
            "apt-get -qq update && apt-cache policy $pins" | grep -E '^\S|Candidate' >&2 || true
    fi
    echo "build-image: buildah build failed (log above)" >&2
    exit 1
fi
t "buildah build" "$s"

s=$(date +%s)
"${B[@]}" push "${policy[@]}" --quiet --format oci --compression-format gzip "$ref" \
    "oci:$work/layout:$ref"
mkdir -p "$image_dir.tmp"
"${DEV[@]}" pack "$work/layout" "$image_dir.tmp/forensic-checkpoint.tar" --name "$ref"
rm -rf "$image_dir"
mv "$image_dir.tmp" "$image_dir"
"${DEV[@]}" inspect "$archive" >"$image_dir/SIZE"
ln -sfn "image-$image_key" "$TOOLS_DIR/image-current"
# Earlier builds (other inputs) are not kept: about 120 MB each.
for old in "$TOOLS_DIR"/image-*; do
    if [[ $(basename "$old") =~ ^image-[0-9a-f]{12}$ ]] && [ "$old" != "$image_dir" ]; then
        rm -rf --one-file-system "$old"
    fi
done
t "OCI archive (gzip layers)" "$s"
cat "$image_dir/SIZE"
t "image" "$begin"
