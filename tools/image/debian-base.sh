#!/usr/bin/env bash
# The Dockerfile's BASE made locally, where no registry serves debian:bookworm-slim: a Debian
# bookworm minbase from debootstrap, brought to the same state as the official slim image
# (bookworm, bookworm-updates and bookworm-security as apt sources, their updates applied, and
# dpkg told to skip docs, man pages and translations), then written as a single-layer OCI archive
# by tools/node/oci_image.py. scripts/build-image.sh caches the archive by the hash of this file
# and oci_image.py, and passes it to the Dockerfile as --build-arg BASE.
#
#   debian-base.sh ROOTFS OUT.tar NAME     (as root; MIRROR = Debian mirror for debootstrap)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rootfs=$1
out=$2
name=$3
: "${MIRROR:=http://deb.debian.org/debian}"
SUITE=bookworm

debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR" >"$rootfs.debootstrap.log" 2>&1 || {
    tail -20 "$rootfs.debootstrap.log" >&2
    exit 1
}

# The official image's apt sources (deb822), not the mirror debootstrap used.
rm -f "$rootfs/etc/apt/sources.list"
cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: http://deb.debian.org/debian
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
# What the official slim image tells dpkg and apt (debuerreotype's slimify and docker-* files):
# packages installed later (the Dockerfile's apt-get install) leave out docs and translations.
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
printf 'Acquire::Languages "none";\n' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
printf 'APT::AutoRemove::SuggestsImportant "false";\n' \
    >"$rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests"

# The point release's security and stable updates, as in the official image of the day.
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
mount -t proc proc "$rootfs/proc"
trap 'umount "$rootfs/proc" 2>/dev/null || true' EXIT
chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    sh -c 'apt-get -qq update && apt-get -qq -y upgrade >/dev/null && apt-get -qq clean'
umount "$rootfs/proc"
trap - EXIT

# Nothing a container needs: device nodes (the runtime mounts /dev), apt lists and caches,
# logs, docs beside the copyright files, man pages, translations, bytecode caches.
rm -rf "${rootfs:?}"/dev/* "$rootfs"/proc/* "$rootfs"/sys/* "$rootfs"/run/* "$rootfs"/tmp/* \
    "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
    "$rootfs"/var/log/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
    "$rootfs"/usr/share/locale/* "$rootfs"/usr/share/lintian "$rootfs"/usr/share/linda \
    "$rootfs"/usr/share/groff/* "$rootfs"/etc/hostname "$rootfs"/etc/resolv.conf
find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
find "$rootfs/usr/share/doc" -mindepth 1 -depth -type d -empty -delete
find "$rootfs" -depth -name __pycache__ -type d -exec rm -rf {} +

python3 "$here/../node/oci_image.py" build --rootfs "$rootfs" --name "$name" \
    --cmd '["bash"]' --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --out "$out"
