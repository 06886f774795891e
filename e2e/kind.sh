#!/usr/bin/env bash
# End to end on a real machine with Docker: a kind cluster whose nodes have CRIU, the image built
# and loaded, the chart installed, the blog's counter pod captured and its analysis asserted.
# The install and assertion steps are e2e/install-chart.sh and e2e/assert-blog.sh, which the
# dev-cluster tests run too; only the cluster differs.
#
#   e2e/kind.sh            # KEEP=1 leaves the cluster running; CLUSTER=name picks its name
#
# Needs: docker, kind (>= 0.27), kubectl, helm, and kubectl-forensic on PATH (`make setup`, then
# PATH=$PWD/.venv/bin:$PATH).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
cluster=${CLUSTER:-forensic-checkpoint-e2e}
image=${IMAGE:-forensic-checkpoint:e2e}
node_image=${NODE_IMAGE:-forensic-checkpoint-kind-node:e2e}
kind_node=${KIND_NODE:-kindest/node:v1.34.0}
secret=RANDOM_4105_KEY

for tool in docker kind kubectl helm kubectl-forensic; do
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

log "install"
"$here/install-chart.sh" \
    --set image.repository="${image%:*}" --set image.tag="${image##*:}" \
    --set image.pullPolicy=Never --wait --timeout 5m
kubectl wait --for=condition=Ready forensicnodes --all --timeout=180s
kubectl get forensicnodes

log "the counter pod"
kubectl -n default create configmap counter --from-file="$here/counter.py" \
    --dry-run=client -o yaml | kubectl apply -f -
kubectl -n default apply -f "$here/counter.yaml"
kubectl -n default wait --for=condition=Ready pod/counters --timeout=180s
for request in "create?test-file" "secret?$secret" ""; do
    kubectl -n default exec counters -c counter -- python3 -c \
        "import urllib.request, sys; print(urllib.request.urlopen('http://127.0.0.1:8088/' + sys.argv[1]).read().decode())" \
        "$request"
done

log "capture"
kubectl -n default apply -f "$here/forensiccheckpoint.yaml"
"$here/assert-blog.sh" default

log "kubectl forensic"
kubectl forensic capture counters -c counter --search "$secret" --wait -n default
kubectl forensic report blog -n default

log "uninstall"
helm uninstall forensic-checkpoint -n forensic-checkpoint --wait
echo "kind.sh: passed"
