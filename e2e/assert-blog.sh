#!/usr/bin/env bash
# The blog scenario's assertions, identical on kind and on the dev cluster: the
# ForensicCheckpoint "blog" becomes Ready, and its analysis found the secret in the counter
# process's memory, the counter's listening socket and its processes.
#
#   KUBECONFIG=... e2e/assert-blog.sh NAMESPACE
set -euo pipefail

namespace=$1
kubectl=${KUBECTL:-kubectl}
secret=RANDOM_4105_KEY

"$kubectl" -n "$namespace" wait --for=condition=Ready fcp/blog --timeout=300s

field() {
    "$kubectl" -n "$namespace" get fcp blog -o "jsonpath={$1}"
}

fail() {
    echo "assert-blog: $*" >&2
    "$kubectl" -n "$namespace" get fcp blog -o yaml >&2
    exit 1
}

[ "$(field .status.phase)" = Completed ] || fail "phase is not Completed"
hits=$(field .status.containers[0].summary.memoryHitCount)
[ "${hits:-0}" -ge 1 ] || fail "the secret was not found in memory (hits: ${hits:-none})"
patterns=$(field '.status.containers[0].summary.memoryHits[*].pattern')
case " $patterns " in
    *" $secret "*) ;;
    *) fail "no memory hit for $secret (patterns: $patterns)" ;;
esac
listening=$(field '.status.containers[0].summary.listening[*].local')
case "$listening" in
    *:8088*) ;;
    *) fail "no listening socket on 8088 (found: $listening)" ;;
esac
commands=$(field '.status.containers[0].summary.processes[*].cmdline')
case "$commands" in
    *counter.py*) ;;
    *) fail "no counter.py process (found: $commands)" ;;
esac
sha=$(field .status.containers[0].archive.sha256)
[ "${#sha}" -eq 64 ] || fail "no archive sha256"
echo "assert-blog: ok: $hits hit(s) for $secret, archive sha256 $sha"
