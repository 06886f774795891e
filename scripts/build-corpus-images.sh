#!/usr/bin/env bash
# The findings corpus's workload image (make corpus-images; make corpus runs it first), built from
# Debian bookworm packages once per machine, like the node images: no registry, no pull.
#   $TOOLS_DIR/corpus-images-<key>/corpus.tar   docker.io/library/forensic-corpus:<key>
#   $TOOLS_DIR/corpus-images-current -> corpus-images-<key>   (written after a successful build)
# <key> hashes this recipe and tools/node/oci_image.py, so a changed recipe rebuilds; the
# corpus's scenarios (dev/src/forensic_checkpoint_dev/corpus/) name the image by that key, so a
# rebuilt image also recaptures them.
#
# The rootfs is a debootstrap minbase into which apt installs the packages below inside a chroot
# (with a policy-rc.d that keeps their daemons from starting), then is stripped like the node's
# python image. It also holds /opt/local-apt: a trusted file: apt source with one small package
# that is not installed (`tree`), so the "apt-get at start" scenario runs the real apt-get and
# dpkg with no network (pods reach no Debian mirror here). A JVM is in it: Debian's
# default-jre-headless (openjdk 17, ~190 MB installed) was measured to fit (see the build log).
#
# Usage: build-corpus-images.sh [--check] [--print-key]   (as root; needs debootstrap, dpkg-dev)
set -euo pipefail
TOOLS_DIR=${TOOLS_DIR:-${FORENSIC_TOOLS_DIR:-$HOME/.cache/forensic-checkpoint}}
TOOLS_DIR=$(realpath -m "$TOOLS_DIR")
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

PACKAGES=(bash coreutils procps iproute2 curl ca-certificates socat netcat-openbsd ncat busybox
    nginx-light redis-server postgresql python3 gunicorn nodejs default-jre-headless)
LOCAL_APT_PACKAGES=(tree)

key=$(cat scripts/build-corpus-images.sh tools/node/oci_image.py | sha256sum | cut -c1-12)
dir=$TOOLS_DIR/corpus-images-$key
name=docker.io/library/forensic-corpus:$key

if [ "${1:-}" = --print-key ]; then
    echo "$key"
    exit 0
fi
if [ -s "$dir/corpus.tar" ]; then
    [ "${1:-}" = --check ] && exit 0
    ln -sfn "corpus-images-$key" "$TOOLS_DIR/corpus-images-current"
    echo "corpus-images: cached $dir/corpus.tar ($name, $(du -h "$dir/corpus.tar" | cut -f1))"
    exit 0
fi
[ "${1:-}" = --check ] && exit 1
if [ "$(id -u)" != 0 ]; then
    echo "build-corpus-images: debootstrap and chroot need root" >&2
    exit 3
fi
for tool in debootstrap dpkg-scanpackages; do
    command -v "$tool" >/dev/null || {
        echo "build-corpus-images: $tool is missing (apt-get install debootstrap dpkg-dev)" >&2
        exit 3
    }
done

mirror=""
if [ -r /etc/apt/sources.list.d/debian.sources ]; then
    mirror=$(awk '$1 == "URIs:" && $2 ~ /\/debian\/?$/ { print $2; exit }' \
        /etc/apt/sources.list.d/debian.sources)
fi
mirror=${mirror:-http://deb.debian.org/debian}

begin=$(date +%s)
mkdir -p "$TOOLS_DIR"
tmp=$(mktemp -d "$TOOLS_DIR/.build.XXXXXX")
chmod 0755 "$tmp"
fs=$tmp/rootfs
cleanup() { # what debootstrap and the chroot mounted, then the temporary directory
    findmnt -rn -o TARGET | grep "^$tmp/" | sort -r | xargs -r umount -l || true
    rm -rf --one-file-system "$tmp"
}
trap cleanup EXIT
t() { echo "build-corpus-images: $1 in $(($(date +%s) - $2)) s"; }

s=$(date +%s)
debootstrap --variant=minbase bookworm "$fs" "$mirror" >"$tmp/debootstrap.log" 2>&1 || {
    tail -20 "$tmp/debootstrap.log" >&2
    exit 1
}
t "debootstrap minbase" "$s"

s=$(date +%s)
printf '#!/bin/sh\n# no daemon starts while the image is built\nexit 101\n' >"$fs/usr/sbin/policy-rc.d"
chmod 0755 "$fs/usr/sbin/policy-rc.d"
mount -t proc proc "$fs/proc"
in_root() { chroot "$fs" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 "$@"; }
in_root apt-get -qq update
in_root apt-get -qq install -y --no-install-recommends "${PACKAGES[@]}" >"$tmp/apt.log" 2>&1 || {
    tail -30 "$tmp/apt.log" >&2
    exit 1
}
t "apt-get install ${PACKAGES[*]}" "$s"

# The offline apt source: the .debs downloaded now, indexed, trusted by a file: source.
s=$(date +%s)
mkdir -p "$fs/opt/local-apt"
in_root sh -c "cd /opt/local-apt && apt-get -qq download ${LOCAL_APT_PACKAGES[*]}"
(cd "$fs/opt/local-apt" && dpkg-scanpackages --multiversion . /dev/null 2>/dev/null >Packages)
umount "$fs/proc"
rm -f "$fs/usr/sbin/policy-rc.d" "$fs/etc/apt/sources.list.d/"*
echo "deb [trusted=yes] file:/opt/local-apt ./" >"$fs/etc/apt/sources.list"
t "local apt source (${LOCAL_APT_PACKAGES[*]})" "$s"

s=$(date +%s)
rm -rf "${fs:?}"/dev/* "$fs"/proc/* "$fs"/sys/* "$fs"/run/* "$fs"/tmp/* \
    "$fs"/var/lib/apt/lists/* "$fs"/var/cache/apt/* "$fs"/var/cache/debconf/*-old \
    "$fs"/var/log/* "$fs"/usr/share/doc/* "$fs"/usr/share/man/* "$fs"/usr/share/info/* \
    "$fs"/usr/share/locale/* "$fs"/usr/share/lintian "$fs"/etc/hostname "$fs"/etc/resolv.conf
# No bytecode shipped (like the official slim images): Python starts with a cold cache.
find "$fs" -depth -name __pycache__ -type d -exec rm -rf {} +
echo "build-corpus-images: rootfs $(du -sh "$fs" | cut -f1)"
mkdir -p "$tmp/out"
python3 tools/node/oci_image.py build --rootfs "$fs" --name "$name" --cmd '["bash"]' \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
    --out "$tmp/out/corpus.tar"
python3 tools/node/oci_image.py verify "$tmp/out/corpus.tar" --name "$name"
t "image archive" "$s"
echo "$name" >"$tmp/out/NAME"
rm -rf "$dir"
mv "$tmp/out" "$dir"
ln -sfn "corpus-images-$key" "$TOOLS_DIR/corpus-images-current"
t "corpus image $dir/corpus.tar ($(du -h "$dir/corpus.tar" | cut -f1))" "$begin"
