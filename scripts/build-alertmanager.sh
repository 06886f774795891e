#!/usr/bin/env bash
# Build the real alert peer used by tests/alerts and benchmarks/alert_storm.py from its Go module:
# Prometheus Alertmanager + amtool. Idempotent: a binary already in the cache is kept. Prints the
# bin directory on stdout (last line).
#
# Falcosidekick is attempted only with WITH_FALCOSIDEKICK=1: the Go module proxy reachable here
# answers 403 "module version is not available" for every github.com/falcosecurity/falcosidekick
# version (its go.mod has no /v2 suffix for v2 tags), so the tests use captured payloads instead.
#
# Why build instead of download: the only reachable source here is the Go module proxy, and a
# pinned version keeps the webhook payload shape stable for the tests.
set -euo pipefail

PEERS_DIR="${PEERS_DIR:-$HOME/.cache/forensic-checkpoint/peers}"
ALERTMANAGER_VERSION="${ALERTMANAGER_VERSION:-v0.28.1}"
FALCOSIDEKICK_VERSION="${FALCOSIDEKICK_VERSION:-latest}"
BIN="$PEERS_DIR/bin"
mkdir -p "$BIN"

if ! command -v go >/dev/null 2>&1; then
    for candidate in /usr/local/go/bin/go /usr/lib/go/bin/go; do
        [[ -x "$candidate" ]] && PATH="$(dirname "$candidate"):$PATH" && break
    done
fi
command -v go >/dev/null 2>&1 || { echo "build-alertmanager: go toolchain not found" >&2; exit 1; }

export GOBIN="$BIN"
export GOFLAGS="${GOFLAGS:--trimpath}"
export GOPATH="${GOPATH:-$PEERS_DIR/gopath}"
export GOCACHE="${GOCACHE:-$PEERS_DIR/gocache}"
# Two cores are shared with other work: build one package at a time.
export GOMAXPROCS="${GOMAXPROCS:-2}"

build() {  # build <binary> <module/path@version>
    local name="$1" pkg="$2" stamp="$BIN/.$1.version"
    if [[ -x "$BIN/$name" && -f "$stamp" && "$(cat "$stamp")" == "$pkg" ]]; then
        return 0
    fi
    echo "build-alertmanager: go install $pkg" >&2
    nice -n 10 go install -p 1 "$pkg"
    echo "$pkg" >"$stamp"
}

build alertmanager "github.com/prometheus/alertmanager/cmd/alertmanager@$ALERTMANAGER_VERSION"
build amtool "github.com/prometheus/alertmanager/cmd/amtool@$ALERTMANAGER_VERSION"
if [[ "${WITH_FALCOSIDEKICK:-0}" == 1 ]]; then
    build falcosidekick "github.com/falcosecurity/falcosidekick@$FALCOSIDEKICK_VERSION"
fi
echo "$BIN"
