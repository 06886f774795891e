#!/usr/bin/env bash
# The image recipe of the real node: OCI archives for `ctr -n k8s.io images import`, written into
# OUT (a fresh directory; scripts/build-node-tools.sh renames it to node-images-<key>, where <key>
# hashes this file, oci_image.py, pause.c and the pause tag, so a recipe change rebuilds):
#   pause.tar    registry.k8s.io/pause:$PAUSE_IMAGE_VERSION   static pause.c (gcc -static)
#   busybox.tar  docker.io/library/busybox:local              Debian's busybox-static + applet links
#   python.tar   docker.io/library/python:3.12-slim-bookworm  debootstrap minbase + python3, procps
# No registry is reachable here, so nothing is pulled. The "python" image carries the name
# e2e/counter.yaml uses so that manifest runs unchanged, but it IS Debian bookworm's python 3.11
# (with bash and coreutils from minbase), not the official python 3.12 image.
#
# Usage: build-images.sh OUT   (as root; MIRROR = Debian mirror URI; needs busybox-static,
#                               debootstrap, gcc, libc6-dev)
set -euo pipefail
begin=$(date +%s)
here=$(cd "$(dirname "$0")" && pwd)
out=$1
: "${PAUSE_IMAGE_VERSION:?}" "${MIRROR:=http://deb.debian.org/debian}"
oci() { python3 "$here/oci_image.py" "$@"; }
t() { echo "build-images: $1 in $(($(date +%s) - $2)) s"; }
work=$(mktemp -d "$out/.work.XXXXXX")
cleanup() { # debootstrap unmounts what it mounted, unless it was killed
    findmnt -rn -o TARGET | grep "^$work/" | sort -r | xargs -r umount -l || true
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT
PATH_ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# pause: one static binary, nothing else.
s=$(date +%s)
mkdir -p "$work/pause"
gcc -static -O2 -s -Wall -Werror -DVERSION="\"$PAUSE_IMAGE_VERSION\"" -o "$work/pause/pause" \
    "$here/pause.c"
"$work/pause/pause" -v >/dev/null
oci build --rootfs "$work/pause" --name "registry.k8s.io/pause:$PAUSE_IMAGE_VERSION" \
    --entrypoint '["/pause"]' --env "$PATH_ENV" --out "$out/pause.tar"
t pause "$s"

# busybox: /bin/busybox and a symlink per applet, root and nobody in /etc/passwd.
s=$(date +%s)
bb=$work/busybox
mkdir -p "$bb"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,proc,sys,dev,home,var}
chmod 1777 "$bb/tmp"
cp /bin/busybox "$bb/bin/busybox"
/bin/busybox --list-full | while read -r applet; do
    [ -e "$bb/$applet" ] || ln -s /bin/busybox "$bb/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' \
    >"$bb/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' >"$bb/etc/group"
oci build --rootfs "$bb" --name docker.io/library/busybox:local --cmd '["sh"]' \
    --env "$PATH_ENV" --out "$out/busybox.tar"
t busybox "$s"

# python: a Debian bookworm minbase with python3 and procps, stripped of what a container does
# not need (apt lists and caches, docs, man pages, locales, logs, bytecode caches: like the
# official slim images, no .pyc is shipped).
s=$(date +%s)
py=$work/python
debootstrap --variant=minbase --include=python3,procps bookworm "$py" "$MIRROR" \
    >"$work/debootstrap.log" 2>&1 || {
    tail -20 "$work/debootstrap.log" >&2
    exit 1
}
t "python rootfs (debootstrap)" "$s"
rm -rf "${py:?}"/dev/* "$py"/proc/* "$py"/sys/* "$py"/run/* "$py"/tmp/* \
    "$py"/var/lib/apt/lists/* "$py"/var/cache/apt/* "$py"/var/cache/debconf/*-old \
    "$py"/var/log/* "$py"/usr/share/doc/* "$py"/usr/share/man/* "$py"/usr/share/info/* \
    "$py"/usr/share/locale/* "$py"/usr/share/lintian "$py"/etc/hostname "$py"/etc/resolv.conf
find "$py" -depth -name __pycache__ -type d -exec rm -rf {} +
oci build --rootfs "$py" --name docker.io/library/python:3.12-slim-bookworm --cmd '["python3"]' \
    --env "$PATH_ENV" --env LANG=C.UTF-8 --out "$out/python.tar"
t python "$s"

for image in pause:registry.k8s.io/pause:$PAUSE_IMAGE_VERSION busybox:docker.io/library/busybox:local \
    python:docker.io/library/python:3.12-slim-bookworm; do
    oci verify "$out/${image%%:*}.tar" --name "${image#*:}"
done
t "all images" "$begin"
