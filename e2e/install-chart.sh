#!/usr/bin/env bash
# The install steps, identical on kind (e2e/kind.sh) and on the dev cluster
# (tests/install/test_e2e_steps.py): namespace with its Pod Security level, the kubelet client
# certificate through a CSR, then the chart. Extra arguments go to `helm upgrade --install`.
#
#   KUBECONFIG=... e2e/install-chart.sh [helm args...]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
namespace=${FC_NAMESPACE:-forensic-checkpoint}
release=${FC_RELEASE:-forensic-checkpoint}
kubectl=${KUBECTL:-kubectl}
helm=${HELM:-helm}
plugin=${KUBECTL_FORENSIC:-kubectl-forensic}

"$kubectl" create namespace "$namespace" --dry-run=client -o yaml | "$kubectl" apply -f -
"$kubectl" label namespace "$namespace" --overwrite pod-security.kubernetes.io/enforce=privileged

"$plugin" kubelet-cert --namespace "$namespace" \
    --secret "$release-kubelet-client" --user forensic-checkpoint:agent --days 1

"$helm" upgrade --install "$release" "$repo/charts/forensic-checkpoint" \
    --namespace "$namespace" --values "$here/values.yaml" "$@"
