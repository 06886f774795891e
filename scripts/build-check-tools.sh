#!/usr/bin/env bash
# Build the chart checks' tools from the Go module proxy at the versions pinned in
# tools/versions.env, once per machine, into a cache keyed by version:
#   $TOOLS_DIR/promtool-<v>/promtool        (github.com/prometheus/prometheus/cmd/promtool)
#   $TOOLS_DIR/kubeconform-<v>/kubeconform  (github.com/yannh/kubeconform/cmd/kubeconform)
# tests/install/test_monitoring.py runs `promtool check rules` on the chart's alerting rules and
# tests/install/test_kubeconform.py runs `kubeconform -strict` on the rendered chart and deploy/.
# promtool pulls in most of Prometheus (cloud service discovery included): a cold build takes
# minutes (docs/dev-cluster.md, "Chart check tools", has the measured times); tests that need a
# missing one skip, and the Python PromQL check (forensic_checkpoint_dev.promql) runs regardless.
#
# Usage: build-check-tools.sh            build whatever is missing (idempotent, prints paths)
#        build-check-tools.sh --check    exit 0 only if both binaries are cached and run
#        build-check-tools.sh --update   regenerate tools/{promtool,kubeconform}/go.mod + go.sum
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=scripts/go-tools.sh
source scripts/go-tools.sh # the pins (tools/versions.env), TOOLS_DIR, build helpers

if [ "${1:-}" = --update ]; then
    mkdir -p tools/promtool tools/kubeconform
    write_simple_mod promtool github.com/prometheus/prometheus "$PROMETHEUS_VERSION" \
        github.com/prometheus/prometheus/cmd/promtool
    write_simple_mod kubeconform github.com/yannh/kubeconform "$KUBECONFORM_VERSION" \
        github.com/yannh/kubeconform/cmd/kubeconform
    for d in promtool kubeconform; do (cd "tools/$d" && rm -f go.sum && go mod tidy); done
    echo "tools/{promtool,kubeconform}/go.mod regenerated; commit them with tools/versions.env"
    exit 0
fi

pinned() { grep -qE "^\s*(require )?$1 $2( |\$)" "$3"; }
pinned github.com/prometheus/prometheus "$PROMETHEUS_VERSION" tools/promtool/go.mod &&
    pinned github.com/yannh/kubeconform "$KUBECONFORM_VERSION" tools/kubeconform/go.mod || {
    echo "build-check-tools: tools/*/go.mod disagree with tools/versions.env; run --update" >&2
    exit 2
}

promtool_dir=$TOOLS_DIR/promtool-$PROMETHEUS_VERSION
kubeconform_dir=$TOOLS_DIR/kubeconform-$KUBECONFORM_VERSION
runs() { [ -x "$1" ] && "$@" >/dev/null 2>&1; }
promtool_ok() { runs "$promtool_dir/promtool" --version; }
kubeconform_ok() { runs "$kubeconform_dir/kubeconform" -v; }

if [ "${1:-}" = --check ]; then
    promtool_ok && kubeconform_ok
    exit
fi

command -v go >/dev/null || {
    echo "build-check-tools: go is not installed" >&2
    exit 3
}

mkdir -p "$TOOLS_DIR"
if ! kubeconform_ok; then
    build kubeconform "$kubeconform_dir" "-X main.version=$KUBECONFORM_VERSION" \
        github.com/yannh/kubeconform/cmd/kubeconform
fi
if ! promtool_ok; then
    v=github.com/prometheus/common/version
    # remove_all_sd leaves out the cloud service discoveries (AWS, Azure, GCE, ...): half the
    # build, and `promtool check rules` does not use them.
    started=$(date +%s)
    GO_TAGS=remove_all_sd build promtool "$promtool_dir" \
        "-X $v.Version=$PROMETHEUS_VERSION -X $v.Branch=HEAD" github.com/prometheus/prometheus/cmd/promtool
    echo "build-check-tools: promtool built in $(($(date +%s) - started)) s" >&2
fi
promtool_ok && kubeconform_ok || {
    echo "build-check-tools: a built binary does not run" >&2
    exit 1
}
"$promtool_dir/promtool" --version | sed -n 1p
"$kubeconform_dir/kubeconform" -v
echo "build-check-tools: ready in $TOOLS_DIR"
