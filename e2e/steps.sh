#!/usr/bin/env bash
# The end-to-end steps, one library for both cluster providers: e2e/real-cluster.sh (the dev
# cluster's real node, here) and e2e/kind.sh (a machine with Docker). A provider brings the
# cluster up, puts the image on its nodes, sets KUBECONFIG and defines these hooks, then runs
# `fc_all`:
#
#   provider_values          helm arguments for this cluster (image, hostPaths, kubelet CA, ...)
#   provider_service_url NS SVC PORT   a URL at which this machine reaches a Service's port
#
# Tools: KUBECTL, HELM, KUBECTL_FORENSIC (default: on PATH), ALERTMANAGER and AMTOOL (the
# Alertmanager scripts/build-alertmanager.sh builds). NODE names the node captures run on.
#
#   source e2e/steps.sh; fc_all
# shellcheck disable=SC2034 # the provider reads FC_* results (timings, the pod list)

fc_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
kubectl=${KUBECTL:-kubectl}
helm=${HELM:-helm}
plugin=${KUBECTL_FORENSIC:-kubectl-forensic}
FC_NAMESPACE=${FC_NAMESPACE:-forensic-checkpoint}
FC_RELEASE=${FC_RELEASE:-forensic-checkpoint}
FC_WORKLOADS=${FC_WORKLOADS:-default}
FC_SECRET=RANDOM_4105_KEY
FC_WORK=${FC_WORK:-$(mktemp -d)}
declare -A FC_TIMES=()

fc_log() { printf '\n== %s (%(%T)T)\n' "$*" -1; }
fc_fail() {
    echo "e2e: FAILED: $*" >&2
    "$kubectl" get pods -A -o wide >&2 || true
    exit 1
}
k() { "$kubectl" "$@"; }
kw() { "$kubectl" -n "$FC_WORKLOADS" "$@"; }
kn() { "$kubectl" -n "$FC_NAMESPACE" "$@"; }
fc_field() { kw get fcp "$1" -o "jsonpath={$2}"; } # name jsonpath

# Seconds since the epoch with a fraction, for the timings the closing note reports.
fc_now() { date +%s.%N; }
fc_since() { awk -v a="$1" -v b="$(fc_now)" 'BEGIN { printf "%.1f", b - a }'; }

# How often the node's kubelet asked its runtime for a checkpoint: the kubelet's own counter,
# read through the API server's node proxy (the same on every provider).
fc_checkpoint_calls() {
    k get --raw "/api/v1/nodes/$NODE/proxy/metrics" |
        awk '/^kubelet_runtime_operations_total\{operation_type="checkpoint_container"\}/ { n = $2 }
            END { print n + 0 }'
}

# Until the ForensicCheckpoint NAME has a final phase; prints it.
fc_wait_final() { # name timeout-seconds
    local phase deadline=$((SECONDS + ${2:-300}))
    while [ $SECONDS -lt $deadline ]; do
        phase=$(fc_field "$1" .status.phase)
        case $phase in Completed | Failed) echo "$phase" && return 0 ;; esac
        sleep 0.5
    done
    fc_fail "ForensicCheckpoint $1 not final after ${2:-300} s (phase ${phase:-none})"
}

fc_install() {
    fc_log "helm install (chart unchanged, $(basename "$fc_here")/values.yaml + provider values)"
    FC_T_INSTALL=$(fc_now)
    local values
    mapfile -t values < <(provider_values)
    FC_NAMESPACE=$FC_NAMESPACE FC_RELEASE=$FC_RELEASE KUBECTL=$kubectl HELM=$helm \
        KUBECTL_FORENSIC=$plugin "$fc_here/install-chart.sh" "${values[@]}" \
        --wait --timeout 5m
    FC_TIMES[install]=$(fc_since "$FC_T_INSTALL")
}

fc_wait_pods() {
    fc_log "operator and agent pods Ready"
    kn rollout status "deployment/$FC_RELEASE-operator" --timeout=180s
    kn rollout status "daemonset/$FC_RELEASE-agent" --timeout=180s
    kn wait --for=condition=Ready pod --all --timeout=180s
    FC_PODS=$(k get pods -A -o wide)
    echo "$FC_PODS"
}

# The chart's `helm test` hook (forensic-checkpoint nodes --require-ready) passes, and removes
# its pod and roles again.
fc_helm_test() {
    fc_log "helm test"
    "$helm" test "$FC_RELEASE" -n "$FC_NAMESPACE" --timeout 3m || fc_fail "helm test failed: $(
        kn logs "$FC_RELEASE-test-nodes" 2>&1 | tail -5)"
    [ -z "$(kn get pods -l app.kubernetes.io/component=test -o name)" ] ||
        fc_fail "helm test left its pod"
    echo "helm test: passed"
}

fc_check_forensicnode() {
    fc_log "ForensicNode $NODE"
    k wait --for=condition=Ready "forensicnode/$NODE" --timeout=180s
    k get forensicnodes
    local endpoint
    endpoint=$(k get forensicnode "$NODE" -o 'jsonpath={.status.agent.endpoint}')
    case $endpoint in
        https://*."$FC_NAMESPACE".pod.*) ;;
        *) fc_fail "ForensicNode $NODE: agent endpoint '$endpoint' is not its pod's DNS name" ;;
    esac
}

fc_deploy_counter() {
    fc_log "the counter pod"
    kw create configmap counter --from-file="$fc_here/counter.py" --dry-run=client -o yaml |
        kw apply -f -
    kw apply -f "$fc_here/counter.yaml"
    kw wait --for=condition=Ready pod/counters --timeout=180s
    local request
    for request in "create?test-file" "secret?$FC_SECRET" ""; do
        kw exec counters -c counter -- python3 -c \
            "import urllib.request, sys; print(urllib.request.urlopen('http://127.0.0.1:8088/' + sys.argv[1]).read().decode())" \
            "$request"
    done
}

fc_capture_blog() {
    fc_log "capture: e2e/forensiccheckpoint.yaml, e2e/assert-blog.sh"
    local before
    before=$(fc_checkpoint_calls)
    kw apply -f "$fc_here/forensiccheckpoint.yaml"
    KUBECTL=$kubectl "$fc_here/assert-blog.sh" "$FC_WORKLOADS"
    FC_TIMES[first-completed]=$(fc_since "$FC_T_INSTALL")
    [ "$(fc_checkpoint_calls)" -eq $((before + 1)) ] || fc_fail "blog: not exactly one kubelet call"
    FC_GET_FCP=$(kw get fcp blog)
    echo "$FC_GET_FCP"
}

# A capture runs while `helm upgrade` changes a value that rolls the agents (and with it the
# kubelet credential: certificate -> token): it completes, and the kubelet was called once.
fc_upgrade_during_capture() { # helm --set arguments...
    fc_log "helm upgrade ($*) while a capture runs"
    local before phase values
    before=$(fc_checkpoint_calls)
    sed 's/name: blog$/name: during-upgrade/' "$fc_here/forensiccheckpoint.yaml" | kw apply -f -
    for _ in $(seq 200); do
        phase=$(fc_field during-upgrade .status.phase)
        [ -n "$phase" ] && [ "$phase" != Pending ] && break
        sleep 0.05
    done
    echo "capture phase when the upgrade starts: ${phase:-none}"
    mapfile -t values < <(provider_values)
    "$helm" upgrade "$FC_RELEASE" "$fc_here/../charts/forensic-checkpoint" -n "$FC_NAMESPACE" \
        --reuse-values "${values[@]}" "$@" --wait --timeout 5m
    kn rollout status "daemonset/$FC_RELEASE-agent" --timeout=180s
    phase=$(fc_wait_final during-upgrade 300)
    [ "$phase" = Completed ] || fc_fail "the capture during the upgrade ended $phase: $(fc_field during-upgrade .status.message)"
    local calls
    calls=$(($(fc_checkpoint_calls) - before))
    [ "$calls" -eq 1 ] || fc_fail "the capture during the upgrade made $calls kubelet calls"
    echo "during-upgrade: Completed, $calls kubelet call"
}

# A kubeconfig for the ServiceAccount NAME of $FC_WORKLOADS (a user with only the RBAC bound to
# it), at the API server and with the CA of the current one.
fc_user_kubeconfig() { # name file
    local server ca
    server=$(k config view --raw --minify -o 'jsonpath={.clusters[0].cluster.server}')
    ca=$(k config view --raw --minify -o 'jsonpath={.clusters[0].cluster.certificate-authority-data}')
    [ -n "$ca" ] || ca=$(base64 -w0 <"$(k config view --raw --minify -o 'jsonpath={.clusters[0].cluster.certificate-authority}')")
    cat >"$2" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: e2e, cluster: {server: "$server", certificate-authority-data: "$ca"}}]
users: [{name: $1, user: {token: "$(kw create token "$1" --duration=1h)"}}]
contexts: [{name: e2e, context: {cluster: e2e, user: $1, namespace: "$FC_WORKLOADS"}}]
current-context: e2e
EOF
}

fc_plugin() {
    fc_log "kubectl forensic capture --wait, get-archive (through the API server)"
    local out name sha started size refused
    out=$("$plugin" capture counters -c counter --search "$FC_SECRET" --wait -n "$FC_WORKLOADS")
    echo "$out"
    name=$(kw get fcp -o name --sort-by=.metadata.creationTimestamp | tail -1)
    name=${name#*/}
    [ "$(fc_field "$name" .status.phase)" = Completed ] || fc_fail "plugin capture $name not Completed"
    # A custodian who holds only the chart's roles: the custodian ClusterRole in the workloads'
    # namespace and the archive-reader Role (token, agent pods, port-forward, the agents' CA)
    # in the release namespace. No pod DNS, no --agent-ca-file: as on a laptop.
    kw create serviceaccount fc-e2e-custodian
    kw create rolebinding fc-e2e-custodian --clusterrole="$FC_RELEASE-custodian" \
        --serviceaccount="$FC_WORKLOADS:fc-e2e-custodian"
    kn create rolebinding fc-e2e-custodian --role="$FC_RELEASE-archive-reader" \
        --serviceaccount="$FC_WORKLOADS:fc-e2e-custodian"
    fc_user_kubeconfig fc-e2e-custodian "$FC_WORK/custodian.kubeconfig"
    started=$(fc_now)
    "$plugin" --kubeconfig "$FC_WORK/custodian.kubeconfig" get-archive "$name" \
        -O "$FC_WORK/$name.tar" || fc_fail "get-archive through the API server failed"
    FC_TIMES[get-archive]=$(fc_since "$started")
    sha=$(sha256sum "$FC_WORK/$name.tar" | cut -d' ' -f1)
    [ "$sha" = "$(fc_field "$name" '.status.containers[0].archive.sha256')" ] ||
        fc_fail "get-archive: sha256 differs from the status"
    # Not `| grep -q`: under pipefail, tar's SIGPIPE when grep stops early fails the pipeline.
    [ "$(tar -tf "$FC_WORK/$name.tar" | grep -c '^checkpoint/')" -gt 0 ] ||
        fc_fail "get-archive: not a checkpoint"
    size=$(stat -c %s "$FC_WORK/$name.tar")
    echo "get-archive: $name, sha256 $sha, $size bytes in ${FC_TIMES[get-archive]} s through the API server"
    # The same custodian without pods/portforward (the archive-reader Role but that rule) is
    # refused by the API server, and told what is missing.
    kn get role "$FC_RELEASE-archive-reader" -o json |
        jq '{apiVersion, kind, metadata: {name: "fc-e2e-no-portforward"},
             rules: [.rules[] | select(.resources != ["pods/portforward"])]}' | kn apply -f -
    kn delete rolebinding fc-e2e-custodian
    kn create rolebinding fc-e2e-custodian --role=fc-e2e-no-portforward \
        --serviceaccount="$FC_WORKLOADS:fc-e2e-custodian"
    if refused=$("$plugin" --kubeconfig "$FC_WORK/custodian.kubeconfig" get-archive "$name" \
        -O "$FC_WORK/refused.tar" 2>&1); then
        fc_fail "get-archive without pods/portforward succeeded"
    fi
    [ ! -e "$FC_WORK/refused.tar" ] || fc_fail "a refused get-archive left a file"
    echo "get-archive without pods/portforward: $refused"
    kn delete rolebinding fc-e2e-custodian
    kn delete role fc-e2e-no-portforward
    kw delete rolebinding fc-e2e-custodian
    kw delete serviceaccount fc-e2e-custodian
}

# Alertmanager (a real one) sends to the operator's receiver Service; one capture completes. Only
# Alertmanager pods may reach the receiver (networkPolicy.alertsFrom); this Alertmanager runs on
# the machine, and traffic from a pod's own node is never subject to NetworkPolicy.
fc_alerts() {
    fc_log "alerts: Alertmanager -> the operator's receiver Service"
    local token url pid=""
    token=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
    kn create secret generic fc-e2e-alerts --from-literal=token="$token" \
        --dry-run=client -o yaml | kn apply -f -
    local values
    mapfile -t values < <(provider_values)
    "$helm" upgrade "$FC_RELEASE" "$fc_here/../charts/forensic-checkpoint" -n "$FC_NAMESPACE" \
        --reuse-values "${values[@]}" --set alerts.enabled=true \
        --set alerts.tokenSecret.name=fc-e2e-alerts \
        --set-json 'networkPolicy.alertsFrom=[{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "alertmanager"}}}]' \
        --wait --timeout 5m
    kn rollout status "deployment/$FC_RELEASE-operator" --timeout=180s
    k apply -f - <<EOF
apiVersion: forensic-checkpoint.dev/v1alpha1
kind: ForensicCapturePolicy
metadata:
  name: e2e-counter
spec:
  match:
    sources: [alertmanager]
    alertNames: [E2ECounterLeak]
    namespaces: [$FC_WORKLOADS]
  capture:
    containers: Alerted
    analysis: {searches: [$FC_SECRET]}
EOF
    url=$(provider_service_url "$FC_NAMESPACE" "$FC_RELEASE-operator-alerts" alerts)
    printf '%s' "$token" >"$FC_WORK/alerts.token"
    cat >"$FC_WORK/alertmanager.yml" <<EOF
route: {receiver: forensics, group_wait: 1s, group_interval: 1s, repeat_interval: 1h}
receivers:
  - name: forensics
    webhook_configs:
      - url: $url/v1/alerts/alertmanager
        http_config: {authorization: {type: Bearer, credentials_file: $FC_WORK/alerts.token}}
EOF
    local am_port
    am_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$ALERTMANAGER" --config.file="$FC_WORK/alertmanager.yml" --storage.path="$FC_WORK/am" \
        --web.listen-address="127.0.0.1:$am_port" --cluster.listen-address= \
        >"$FC_WORK/alertmanager.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        curl -fsS "http://127.0.0.1:$am_port/-/ready" >/dev/null 2>&1 && break
        sleep 0.2
    done
    "$AMTOOL" --alertmanager.url="http://127.0.0.1:$am_port" alert add E2ECounterLeak \
        severity=critical namespace="$FC_WORKLOADS" pod=counters container=counter
    local name=""
    for _ in $(seq 120); do
        name=$(kw get fcp -l forensic-checkpoint.dev/alert-source=alertmanager -o name | head -1)
        [ -n "$name" ] && break
        sleep 0.5
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    [ -n "$name" ] || fc_fail "no ForensicCheckpoint from the alert (see $FC_WORK/alertmanager.log)"
    name=${name#*/}
    [ "$(fc_wait_final "$name" 300)" = Completed ] || fc_fail "alert capture $name failed"
    echo "alert capture $name: Completed"
    k delete forensiccapturepolicy e2e-counter
}

# Whether a pod in namespace NS (POD, CONTAINER) can open a TCP connection to HOST:PORT.
fc_connects() { # ns pod container host port; prints open or closed
    k -n "$1" exec "$2" -c "$3" -- python3 -c '
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()
    print("open")
except OSError:
    print("closed")' "$4" "$5"
}

# The chart's NetworkPolicies where the provider's cluster enforces them (FC_NETPOL_ENFORCED=1):
# the operator reaches its agent (every capture above went that way too), while a pod without
# the allowed labels (the counter) reaches neither the agent's API nor the operator's metrics or
# alert receiver (alertsFrom was narrowed to Alertmanager pods by the alerts step).
fc_network_policy() {
    if [ "${FC_NETPOL_ENFORCED:-0}" != 1 ]; then
        echo "network policy: this cluster's CNI does not enforce it; not checked"
        return 0
    fi
    fc_log "NetworkPolicy enforced"
    local agent operator agent_ip operator_ip port metrics_port alerts_port target got
    # A pod of the current rollout: the alerts step's upgrade may leave an old operator pod
    # (without the alerts port) terminating for a while.
    fc_live_pod() { # component; the first such pod's name (no `| head`: pipefail)
        local names
        names=$(kn get pods -l "app.kubernetes.io/component=$1" --field-selector=status.phase=Running \
            -o go-template='{{range .items}}{{if not .metadata.deletionTimestamp}}{{.metadata.name}}{{"\n"}}{{end}}{{end}}')
        echo "${names%%$'\n'*}"
    }
    agent=$(fc_live_pod agent)
    operator=$(fc_live_pod operator)
    if [ -z "$agent" ] || [ -z "$operator" ]; then
        fc_fail "no running agent or operator pod"
    fi
    agent_ip=$(kn get pod "$agent" -o 'jsonpath={.status.podIP}')
    operator_ip=$(kn get pod "$operator" -o 'jsonpath={.status.podIP}')
    fc_port() { # pod container port-name
        local found
        found=$(kn get pod "$1" -o "jsonpath={.spec.containers[?(@.name==\"$2\")].ports[?(@.name==\"$3\")].containerPort}")
        [ -n "$found" ] || fc_fail "pod $1 has no $2 port named $3"
        echo "$found"
    }
    port=$(fc_port "$agent" agent https)
    metrics_port=$(fc_port "$operator" operator metrics)
    alerts_port=$(fc_port "$operator" operator alerts)
    [ "$(fc_connects "$FC_NAMESPACE" "$operator" operator "$agent_ip" "$port")" = open ] ||
        fc_fail "the operator cannot reach its agent at $agent_ip:$port"
    for target in "agent-api $agent_ip $port" \
        "operator-metrics $operator_ip $metrics_port" \
        "operator-alerts $operator_ip $alerts_port"; do
        # shellcheck disable=SC2086 # name host port
        set -- $target
        got=$(fc_connects "$FC_WORKLOADS" counters counter "$2" "$3")
        [ "$got" = closed ] || fc_fail "the counter pod reached $1 ($2:$3) past the NetworkPolicy"
        echo "counter pod -> $1 ($2:$3): $got"
    done
    echo "network policy: enforced; the operator reaches its agent, the counter pod neither the agent's API nor the operator's metrics and alert ports"
}

# Held evidence stays; everything else of the release goes with `helm uninstall`, and with its
# pre-delete hook (the uninstall clean-up Job) what the agents and the operator wrote outside it.
fc_uninstall() {
    fc_log "helm uninstall"
    kw label fcp blog forensic-checkpoint.dev/hold=true --overwrite
    local held archive names
    archive=$(fc_field blog '.status.containers[0].archive.path')
    names=$(kw get fcp -o name | grep -v '/blog$' || true)
    # shellcheck disable=SC2086 # one name per word
    [ -z "$names" ] || kw delete $names --wait --timeout=120s
    [ -n "$(k get forensicnodes -o name)" ] || fc_fail "no ForensicNode before the uninstall"
    "$helm" uninstall "$FC_RELEASE" -n "$FC_NAMESPACE" --wait --timeout 5m
    # Helm waits for its objects; their pods go after them (garbage collection).
    kn wait --for=delete pod -l "app.kubernetes.io/instance=$FC_RELEASE" --timeout=120s
    local left
    left=$(k get all,sa,secrets,configmaps,roles,rolebindings,networkpolicies,jobs -n "$FC_NAMESPACE" \
        -l "app.kubernetes.io/instance=$FC_RELEASE" -o name)
    left+=$(k get clusterroles,clusterrolebindings,validatingadmissionpolicies,validatingadmissionpolicybindings,validatingwebhookconfigurations,mutatingwebhookconfigurations \
        -l "app.kubernetes.io/instance=$FC_RELEASE" -o name)
    # Not Helm's objects, but the release's all the same: what the agents and the operator wrote.
    left+=$(k get forensicnodes -o name)
    left+=$(k get clusterroles,clusterrolebindings -o name | grep 'forensic-checkpoint:kubelet-client:' || true)
    left+=$(k get csr -o 'jsonpath={range .items[*]}{.metadata.name} {.spec.signerName}{"\n"}{end}' |
        grep ' forensic-checkpoint.dev/' || true)
    left+=$(kn get sa,pods,jobs,roles,rolebindings -o name | grep -v '^serviceaccount/default$' || true)
    left+=$(kn get secrets -o name | grep -v -e "secret/$FC_RELEASE-kubelet-client\$" -e 'secret/fc-e2e-alerts$' || true)
    [ -z "$left" ] || fc_fail "helm uninstall left: $left"
    k get crd forensiccheckpoints.forensic-checkpoint.dev >/dev/null || fc_fail "the CRDs went"
    held=$(kw get fcp -o name)
    [ "$held" = forensiccheckpoint.forensic-checkpoint.dev/blog ] || fc_fail "left: $held"
    FC_HELD_ARCHIVE=$archive
    echo "helm uninstall: left the CRDs and the held ForensicCheckpoint blog ($archive); no ForensicNode, grant, CSR, ServiceAccount, Role, Job or pod"
    # Not the release's: what install-chart.sh and these steps created beside it.
    echo "also left (not objects of the release): $(kn get secrets,configmaps -o name |
        grep -v kube-root-ca.crt | tr '\n' ' ')"
}

fc_all() {
    local started
    started=$(fc_now)
    fc_install
    fc_wait_pods
    fc_check_forensicnode
    fc_helm_test
    fc_deploy_counter
    fc_capture_blog
    fc_upgrade_during_capture --set kubelet.authMode=token
    fc_plugin
    fc_alerts
    fc_network_policy
    fc_uninstall
    FC_TIMES[total]=$(fc_since "$started")
    fc_log "timings (s)"
    local t
    for t in "${!FC_TIMES[@]}"; do echo "$t: ${FC_TIMES[$t]}"; done
}
