#!/usr/bin/env bash
# End to end on a machine with Docker: a kind cluster whose nodes have CRIU, the image built and
# loaded, then the steps of e2e/steps.sh, which e2e/real-cluster.sh (`make e2e-cluster`) runs on
# this project's real node: the chart installed, the blog capture, an upgrade during a capture,
# the kubectl plugin, both kubelet credentials, the alert path and the uninstall. Only the
# cluster provider (this file's hooks) differs.
#
#   e2e/kind.sh            # KEEP=1 leaves the cluster running; CLUSTER=name picks its name
#
# Needs: docker, kind (>= 0.27), kubectl, helm, and kubectl-forensic on PATH (`make setup`, then
# PATH=$PWD/.venv/bin:$PATH), and ALERTMANAGER, AMTOOL (scripts/build-alertmanager.sh prints
# their directory).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
cluster=${CLUSTER:-forensic-checkpoint-e2e}
image=${IMAGE:-forensic-checkpoint:e2e}
node_image=${NODE_IMAGE:-forensic-checkpoint-kind-node:e2e}
kind_node=${KIND_NODE:-kindest/node:v1.34.0}

for tool in docker kind kubectl helm kubectl-forensic "${ALERTMANAGER:-alertmanager}"; do
    command -v "$tool" >/dev/null || { echo "kind.sh: $tool is not on PATH" >&2; exit 2; }
done

log() { printf '\n== %s\n' "$*"; }

cleanup() {
    if [ "${KEEP:-0}" != 1 ]; then
        kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

log "images"
docker build -t "$image" "$repo"
docker build -t "$node_image" --build-arg "KIND_NODE=$kind_node" -f "$here/node.Dockerfile" "$here"

log "cluster $cluster"
kind create cluster --name "$cluster" --image "$node_image" \
    --config "$here/kind-config.yaml" --wait 120s
export KUBECONFIG
KUBECONFIG=$(mktemp)
kind get kubeconfig --name "$cluster" >"$KUBECONFIG"
kind load docker-image "$image" --name "$cluster"

# serverTLSBootstrap: each kubelet asks for a serving certificate, which needs approval.
log "kubelet serving certificates"
nodes=$(kubectl get nodes -o name | wc -l)
for _ in $(seq 60); do
    pending=$(kubectl get csr -o go-template='{{range .items}}{{if and (eq .spec.signerName "kubernetes.io/kubelet-serving") (not .status.certificate)}}{{.metadata.name}} {{end}}{{end}}')
    for csr in $pending; do
        kubectl certificate approve "$csr"
    done
    issued=$(kubectl get csr -o go-template='{{range .items}}{{if and (eq .spec.signerName "kubernetes.io/kubelet-serving") .status.certificate}}x{{end}}{{end}}')
    [ "${#issued}" -ge "$nodes" ] && break
    sleep 2
done

# The hooks e2e/steps.sh calls (see its header).
provider_values() {
    printf '%s\n' --set "image.repository=${image%:*}" --set "image.tag=${image##*:}" \
        --set image.pullPolicy=Never
}
forwards=()
provider_service_url() { # namespace service port-name: through a port-forward
    local port
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    kubectl -n "$1" port-forward "service/$2" "$port:$3" >/dev/null 2>&1 &
    forwards+=($!)
    sleep 2
    echo "http://127.0.0.1:$port"
}
NODE=$(kubectl get nodes -o name | grep -v control-plane | head -1)
export NODE=${NODE#node/}
export ALERTMANAGER=${ALERTMANAGER:-alertmanager} AMTOOL=${AMTOOL:-amtool}

# shellcheck source=e2e/steps.sh
source "$here/steps.sh"
fc_all
kill "${forwards[@]}" 2>/dev/null || true
echo "kind.sh: passed"
