#!/usr/bin/env bash
# System tools some tests use beside the Python environment: `age` (interop of encrypted
# evidence), `shellcheck` (the e2e scripts), `chromium` (rendering the offline HTML report) and
# `zstd`. Without them those tests skip with a reason; CI installs them so nothing skips.
set -euo pipefail
need=()
command -v age >/dev/null || need+=(age)
command -v shellcheck >/dev/null || need+=(shellcheck)
command -v chromium >/dev/null || need+=(chromium)
command -v zstd >/dev/null || need+=(zstd)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "test-deps: missing ${need[*]}; install them with your package manager" >&2
    exit 0
fi
echo "test-deps: installing ${need[*]}" >&2
apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
