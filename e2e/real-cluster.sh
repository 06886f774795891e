#!/usr/bin/env bash
# End to end on this machine, without Docker: the dev cluster's real single-node cluster
# (`forensic-checkpoint-dev cluster up --real-node --bare`: containerd + runc + CRIU, a kubelet,
# kube-scheduler, kube-proxy, CoreDNS), the image `make image` built imported into its
# containerd, then the steps of e2e/steps.sh, which e2e/kind.sh runs on kind: the chart
# installed unchanged, the blog capture, an upgrade during a capture, the kubectl plugin, both
# kubelet credentials, the alert path and the uninstall. `make e2e-cluster` runs it.
#
#   e2e/real-cluster.sh     # KEEP=1 leaves the cluster up (then: forensic-checkpoint-dev
#                           # cluster down --dir <dir>); CLUSTER_DIR=dir picks its directory
#
# Needs root, `make cluster-tools node-tools image` and the venv (`make setup`).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
venv=${VENV:-$repo/.venv}
tools=${TOOLS_DIR:-${FORENSIC_TOOLS_DIR:-$HOME/.cache/forensic-checkpoint}}
export FORENSIC_TOOLS_DIR=$tools
# shellcheck source=/dev/null
source "$repo/tools/versions.env"
export KUBECTL=$tools/kubernetes-$KUBERNETES_VERSION/kubectl
export HELM=$tools/helm-$HELM_VERSION/helm
export KUBECTL_FORENSIC=$venv/bin/kubectl-forensic
dev=$venv/bin/forensic-checkpoint-dev
am_bin=$(bash "$repo/scripts/build-alertmanager.sh" | tail -1)
export ALERTMANAGER=$am_bin/alertmanager AMTOOL=$am_bin/amtool
export NODE=realnode
# The real node's cluster runs kube-router's firewall: NetworkPolicy is enforced.
export FC_NETPOL_ENFORCED=1
work=$(mktemp -d /tmp/fc-e2e.XXXXXX)
dir=${CLUSTER_DIR:-$work/cluster}
export FC_WORK=$work

cleanup() {
    local rc=$?
    if [ "${KEEP:-0}" = 1 ]; then
        echo "real-cluster.sh: cluster kept: $dev cluster down --dir $dir" >&2
    elif [ -f "$dir/state.json" ]; then
        "$dev" cluster down --dir "$dir" >&2 || rc=1
    fi
    exit $rc
}
trap cleanup EXIT

started=$(date +%s.%N)
printf '\n== cluster (real node) in %s\n' "$dir"
"$dev" cluster up --real-node --nodes 0 --bare --dir "$dir"
export KUBECONFIG=$dir/admin.kubeconfig
token=$(jq -r .realNode.token "$dir/state.json")
kubelet_root=/var/lib/fcp-$token
containerd_state=/run/fcp-$token/containerd

printf '\n== image\n'
"$dev" image import --address "/run/fcp-$token/containerd.sock" ${IMAGE_ARCHIVE:+"$IMAGE_ARCHIVE"}

# The kubelet's serving certificate comes from the dev cluster's kubelet CA, not the cluster
# CA: the chart reads it from a ConfigMap of ours (kubelet.servingCA).
"$KUBECTL" create namespace forensic-checkpoint --dry-run=client -o yaml | "$KUBECTL" apply -f -
"$KUBECTL" -n forensic-checkpoint create configmap kubelet-serving-ca \
    --from-file=ca.crt="$dir/pki/kubelet-ca.crt" --dry-run=client -o yaml | "$KUBECTL" apply -f -

# This node's paths (its kubelet root and containerd state are per cluster, so that `down`
# removes them), and the kubelet CA above. Everything else is the chart's default.
provider_values() {
    printf '%s\n' \
        --set "agent.checkpointDir=$kubelet_root/checkpoints" \
        --set "agent.stateDir=$kubelet_root/forensic-checkpoint" \
        --set "agent.criuLogDirs={$containerd_state/io.containerd.runtime.v2.task/k8s.io}" \
        --set kubelet.servingCA.configMap=kubelet-serving-ca
}

# This machine reaches ClusterIPs through the node's kube-proxy.
provider_service_url() { # namespace service port-name
    "$KUBECTL" -n "$1" get service "$2" \
        -o "jsonpath=http://{.spec.clusterIP}:{.spec.ports[?(@.name==\"$3\")].port}"
}

# shellcheck source=e2e/steps.sh
source "$here/steps.sh"
fc_all

# The kubelet's counter, which the steps check, against containerd's own (its gRPC metrics).
runtime=$(curl -fsS "http://127.0.0.1:$(jq -r .realNode.metricsPort "$dir/state.json")/v1/metrics" |
    awk '/^grpc_server_started_total\{.*grpc_method="CheckpointContainer"/ { n += $2 } END { print n + 0 }')
kubelet=$(fc_checkpoint_calls)
echo "checkpoint calls: kubelet $kubelet, containerd $runtime"
[ "$kubelet" -eq "$runtime" ] || fc_fail "the kubelet counted $kubelet checkpoint calls, containerd $runtime"
[ -f "$FC_HELD_ARCHIVE" ] || fc_fail "the held archive $FC_HELD_ARCHIVE is gone from the node"
echo "real-cluster.sh: passed in $(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }') s"
