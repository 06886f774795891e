#!/usr/bin/env bash
# Build the peer tool the benchmarks compare against: checkpointctl v1.5.0 from its Go module
# (Go module proxy), into a versioned cache directory, verified with `--version`. Idempotent:
# a cached binary reporting the right version is reused. Prints the binary's path on stdout.
#
# checkpointctl v1.5.0 requires go-criu/v8 v8.1.0, which the proxy no longer serves ("This
# module version is not available"). When `go install` fails for that reason the module source
# is built with go-criu v8.2.0 substituted (same API; v8.2.0 is what checkpointctl's main branch
# used for memparse at the time); the substitution is recorded in $DEST/BUILD-NOTE.
set -euo pipefail
VERSION=${CHECKPOINTCTL_VERSION:-v1.5.0}
GO_CRIU_FALLBACK=${GO_CRIU_FALLBACK:-v8.2.0}
TOOLS_DIR=${TOOLS_DIR:-$HOME/.cache/forensic-checkpoint}
DEST="$TOOLS_DIR/peers/checkpointctl-$VERSION"
BIN="$DEST/checkpointctl"
MODULE=github.com/checkpoint-restore/checkpointctl
LDFLAGS="-X main.name=checkpointctl -X main.version=${VERSION#v}"

version_ok() {
    [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | grep -q "${VERSION#v}"
}

if ! version_ok; then
    command -v go >/dev/null || { echo "build-peers: go is required" >&2; exit 1; }
    mkdir -p "$DEST"
    echo "build-peers: go install $MODULE@$VERSION" >&2
    if ! GOBIN="$DEST" CGO_ENABLED=0 go install -ldflags "$LDFLAGS" "$MODULE@$VERSION" 2>"$DEST/install.log"; then
        grep -q "not available" "$DEST/install.log" || { cat "$DEST/install.log" >&2; exit 1; }
        src=$(go mod download -json "$MODULE@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
        work=$(mktemp -d)
        trap 'rm -rf "$work"' EXIT
        cp -r "$src/." "$work/" && chmod -R u+w "$work"
        old=$(awk '/checkpoint-restore\/go-criu\/v8 /{print $2; exit}' "$work/go.mod")
        echo "build-peers: go-criu/v8 $old unavailable; building with $GO_CRIU_FALLBACK" >&2
        (cd "$work" && go mod edit -replace "github.com/checkpoint-restore/go-criu/v8@$old=github.com/checkpoint-restore/go-criu/v8@$GO_CRIU_FALLBACK" \
            && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -ldflags "$LDFLAGS" -o "$BIN" .) >&2
        echo "checkpointctl $VERSION built with go-criu/v8 $GO_CRIU_FALLBACK instead of $old (not on the proxy)" >"$DEST/BUILD-NOTE"
    fi
    version_ok || { echo "build-peers: $BIN does not report $VERSION" >&2; "$BIN" --version >&2 || true; exit 1; }
fi
echo "$BIN"
