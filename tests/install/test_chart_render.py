"""The chart as rendered by `helm template`: lint, CRDs, least privilege, pod security, values,
and the raw manifests in deploy/ (no cluster needed; the cluster tests apply the same renders)."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import ssl
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from forensic_checkpoint.agent.evidence.retention_keeper import policy_from_values
from forensic_checkpoint.agent.identity import keys
from forensic_checkpoint.agent.readiness.criu_config import CriuConfigSettings
from forensic_checkpoint.agent.values import export_config
from forensic_checkpoint.agent_identity import agent_server_name
from forensic_checkpoint.domain.evidence.retention import ContainerRule, Limits, RetentionPolicy
from forensic_checkpoint.domain.identity import signing
from forensic_checkpoint.domain.identity.profiles import SERVING
from forensic_checkpoint_dev import chart_readme
from forensic_checkpoint_dev.deploy import CHART, DEPLOY_MANIFEST, render_deploy

from .chart import (
    CI_VALUES,
    REPO,
    agent_containers,
    by_kind,
    documents,
    helm,
    one,
    rules,
    run,
    template,
)

# Each test renders the chart with `helm template` (a subprocess, about 0.5 s a render).
pytestmark = pytest.mark.slow

VALUE_SETS = [None, *CI_VALUES]
IDS = ["defaults", *(p.stem for p in CI_VALUES)]


def render(values: Path | None) -> list[dict[str, Any]]:
    return documents(template(*([values] if values else [])))


@pytest.fixture(scope="module", params=VALUE_SETS, ids=IDS)
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(request.param)


def agent_values(docs: list[dict[str, Any]]) -> str:
    """The agent's values file, from the one ConfigMap that holds it."""
    found = [d for d in by_kind(docs, "ConfigMap") if "agent-values.yaml" in d.get("data", {})]
    assert len(found) == 1
    return str(found[0]["data"]["agent-values.yaml"])


def pod_spec(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return dict(one(docs, kind)["spec"]["template"]["spec"])


def test_ci_value_sets_exist() -> None:
    assert len(CI_VALUES) >= 2


@pytest.mark.parametrize("values", VALUE_SETS, ids=IDS)
def test_helm_lint_is_clean(values: Path | None) -> None:
    args = ["lint", "--strict", str(CHART)] + (["--values", str(values)] if values else [])
    out = run(helm(), *args).stdout
    assert "[WARNING]" not in out
    assert "[ERROR]" not in out
    assert "0 chart(s) failed" in out


def test_chart_crds_are_the_generated_ones() -> None:
    """The chart carries a copy of crds/ (a symlink out of the chart makes Helm warn, and is
    lost by some packagers): `make crds` writes both, and they must be the same files."""
    copy = CHART / "files" / "crds"
    assert not copy.is_symlink()
    assert {p.name: p.read_text() for p in copy.glob("*.yaml")} == {
        p.name: p.read_text() for p in (REPO / "crds").glob("*.yaml")
    }, "charts/forensic-checkpoint/files/crds is stale: run `make crds`"
    rendered = {
        c["metadata"]["name"]: c["spec"] for c in by_kind(render(None), "CustomResourceDefinition")
    }
    generated = {
        d["metadata"]["name"]: d["spec"]
        for d in (yaml.safe_load(p.read_text()) for p in (REPO / "crds").glob("*.yaml"))
    }
    assert rendered == generated


def test_crds_are_templates_kept_on_uninstall() -> None:
    docs = render(None)
    crds = by_kind(docs, "CustomResourceDefinition")
    assert {c["metadata"]["name"] for c in crds} == {
        yaml.safe_load(p.read_text())["metadata"]["name"] for p in (REPO / "crds").glob("*.yaml")
    }
    for crd in crds:
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert not by_kind(
        documents(template(set_values=["crds.install=false"])), "CustomResourceDefinition"
    )
    assert not (CHART / "crds").exists(), "crds/ would never be upgraded by Helm"


def test_rbac_has_no_wildcards_no_node_proxy_no_secrets(
    rendered: list[dict[str, Any]],
) -> None:
    seen = 0
    for role, rule in rules(rendered):
        seen += 1
        where = f"{role['kind']} {role['metadata']['name']}"
        for key in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            assert "*" not in (rule.get(key) or []), f"wildcard {key} in {where}"
        resources = set(rule.get("resources") or [])
        assert not resources & {"nodes/proxy", "pods/exec", "pods/attach", "secrets"}, where
        assert not set(rule["verbs"]) & {"escalate", "bind", "impersonate"}, where
        if "nodes/checkpoint" in resources:
            assert rule["verbs"] == ["create"], where
            assert "agent" in role["metadata"]["name"], where
    assert seen >= 8


def _rules_of(docs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return list(one(docs, "ClusterRole", name)["rules"])


def grants(docs: list[dict[str, Any]], subject: str) -> set[tuple[str, ...]]:
    """What a ServiceAccount is granted by the role bindings: (apiGroup, resource, verb) from
    ClusterRoleBindings, and (namespace, apiGroup, resource, verb, resourceNames) from
    RoleBindings."""
    found: set[tuple[str, ...]] = set()
    for kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        roles = {
            (r["metadata"].get("namespace", ""), r["metadata"]["name"]): r
            for r in by_kind(docs, role_kind)
        }
        for binding in by_kind(docs, kind):
            if not any(s.get("name") == subject for s in binding["subjects"]):
                continue
            namespace = binding["metadata"].get("namespace", "")
            for rule in roles[namespace, binding["roleRef"]["name"]]["rules"]:
                names = ",".join(rule.get("resourceNames", []))
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        for verb in rule["verbs"]:
                            where = (namespace, group, resource, verb, names)
                            found.add(where if kind == "RoleBinding" else where[1:4])
    return found


def test_rbac_equals_the_rbac_the_operator_and_agent_tests_prove() -> None:
    """deploy/rbac/*.yaml is what the operator, agent and alert tests run with. The chart grants
    the same; the alert receiver's rules only when the receiver is enabled."""
    plain = documents(template(release="forensic-checkpoint"))
    with_alerts = documents(
        template(
            release="forensic-checkpoint",
            set_values=[
                "alerts.enabled=true",
                "alerts.tokenSecret.name=t",
                "kubelet.authMode=csr",
            ],
        )
    )
    for component in ("operator", "agent"):
        proven = documents((REPO / "deploy" / "rbac" / f"{component}.yaml").read_text())
        sa = f"forensic-checkpoint-{component}"
        assert grants(with_alerts, sa) == grants(proven, sa)
        assert grants(plain, sa) <= grants(proven, sa)
    assert ("forensic-checkpoint.dev", "forensiccheckpoints", "create") not in grants(
        plain, "forensic-checkpoint-operator"
    )


def test_allow_list_narrows_the_operator_to_those_namespaces() -> None:
    docs = documents(template(set_values=["captureNamespaces.allow={payments,web}"]))
    cluster_rules = _rules_of(docs, "fc-forensic-checkpoint-operator")
    # ForensicNodes, cluster-scoped: read, and Ready turned Unknown when an agent stops.
    assert cluster_rules[:2] == [
        {
            "apiGroups": ["forensic-checkpoint.dev"],
            "resources": ["forensicnodes"],
            "verbs": ["get", "list"],
        },
        {
            "apiGroups": ["forensic-checkpoint.dev"],
            "resources": ["forensicnodes/status"],
            "verbs": ["patch"],
        },
    ]
    # The rest is the agent certificates' signer (csr mode), cluster-scoped by nature: Nodes
    # and CSRs, nothing a namespace holds.
    assert {g for r in cluster_rules[2:] for g in r["apiGroups"]} == {"", "certificates.k8s.io"}
    assert {r for rule in cluster_rules[2:] for r in rule["resources"]} == {
        "nodes",
        "certificatesigningrequests",
        "certificatesigningrequests/approval",
        "certificatesigningrequests/status",
        "signers",
    }
    # The signer watches its requests (a list every --signer-interval before, issue 19).
    [csr_rule] = [r for r in cluster_rules if r["resources"] == ["certificatesigningrequests"]]
    assert csr_rule["verbs"] == ["get", "list", "watch"]
    # Besides the release namespace's own Roles (the operator's agent tokens, the archive reader).
    for kind in ("Role", "RoleBinding"):
        namespaces = [d["metadata"]["namespace"] for d in by_kind(docs, kind)]
        assert sorted(n for n in namespaces if n != "forensic-checkpoint") == ["payments", "web"]
    args = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=payments" in args
    assert "--namespace=web" in args
    assert "--all-namespaces" not in args
    policy = one(docs, "ValidatingAdmissionPolicy", "fc-forensic-checkpoint-capture-namespaces")
    assert [v["expression"] for v in policy["spec"]["validations"]] == [
        'variables.ns in ["payments","web"]'
    ]


def test_custody_verbs_are_the_custodians_alone(rendered: list[dict[str, Any]]) -> None:
    """`custody` and `reveal` (asked for by admission-custody.yaml) are in the custodian role,
    which no built-in role aggregates; the operator has only `finalize`, and `reveal` when the
    alert receiver runs (a capture policy, written by cluster admins, may ask for it)."""
    custom = {"custody", "reveal", "finalize"}
    holders = {
        role["metadata"]["name"].rsplit("-", 1)[1]: set(rule["verbs"]) & custom
        for role, rule in rules(rendered)
        if set(rule["verbs"]) & custom
    }
    assert holders.pop("alerts", {"reveal"}) == {"reveal"}
    assert holders == {"custodian": {"custody", "reveal"}, "operator": {"finalize"}}
    (custodian,) = [
        r for r in by_kind(rendered, "ClusterRole") if r["metadata"]["name"].endswith("-custodian")
    ]
    assert not any("aggregate-to" in label for label in custodian["metadata"]["labels"])
    (policy,) = [
        p
        for p in by_kind(rendered, "ValidatingAdmissionPolicy")
        if p["metadata"]["name"].endswith("-custody")
    ]
    assert {v["message"].split("(ClusterRole ")[1] for v in policy["spec"]["validations"]} == {
        custodian["metadata"]["name"] + ")"
    }
    for binding in by_kind(rendered, "ValidatingAdmissionPolicyBinding"):
        assert binding["spec"]["validationActions"] == ["Deny"]


def _receiver(docs: list[dict[str, Any]]) -> str:
    policy = one(docs, "ValidatingAdmissionPolicy", "fc-forensic-checkpoint-alert-provenance")
    binding = one(docs, "ValidatingAdmissionPolicyBinding", policy["metadata"]["name"])
    assert binding["spec"]["validationActions"] == ["Deny"]
    variables = {v["name"]: v["expression"] for v in policy["spec"]["variables"]}
    return str(json.loads(variables["receiver"]))


def test_alert_provenance_is_guarded_for_the_operators_identity_always() -> None:
    """Whether or not the receiver is on, only its identity may set spec.reason.alert."""
    assert _receiver(documents(template())) == (
        "system:serviceaccount:forensic-checkpoint:fc-forensic-checkpoint-operator"
    )
    custom = documents(template(set_values=["alerts.receiverIdentity=system:serviceaccount:x:y"]))
    assert _receiver(custom) == "system:serviceaccount:x:y"


def test_operator_deployment(rendered: list[dict[str, Any]]) -> None:
    deployment = one(rendered, "Deployment")
    # Two replicas with leader election (docs/install.md#high-availability).
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    spec = pod_spec(rendered, "Deployment")
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = spec["containers"]
    ctx = container["securityContext"]
    assert ctx == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert container["args"][0] == "operator"
    assert not any("hostPath" in v for v in spec["volumes"])


def test_operator_replicas_elect_a_leader() -> None:
    docs = documents(template(set_values=["alerts.enabled=true", "alerts.tokenSecret.name=t"]))
    spec = pod_spec(docs, "Deployment")
    (container,) = spec["containers"]
    assert "--leader-elect" in container["args"]
    assert "--leader-elect-lease-duration=15" in container["args"]
    alerts_service = "--leader-elect-alerts-service=fc-forensic-checkpoint-operator-alerts"
    assert alerts_service in container["args"]
    assert container["env"][0]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    anti = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert one(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    # The leader writes the alert Service's endpoint: no selector would also pick a standby.
    assert "selector" not in one(docs, "Service", "fc-forensic-checkpoint-operator-alerts")["spec"]
    lease_rules = [
        rule
        for role, rule in rules(docs)
        if role["metadata"]["name"] == "fc-forensic-checkpoint-operator-leader-election"
    ]
    assert one(docs, "Role", "fc-forensic-checkpoint-operator-leader-election")
    assert {(r["resources"][0], tuple(r["verbs"])) for r in lease_rules} == {
        ("leases", ("get", "create", "update")),
        ("endpointslices", ("get", "create", "patch")),
        ("services", ("get",)),
    }


def test_one_operator_replica_without_leader_election() -> None:
    values = ["operator.replicas=1", "operator.leaderElection.enabled=false", "alerts.enabled=true"]
    values.append("alerts.tokenSecret.name=t")
    docs = documents(template(set_values=values))
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    args = pod_spec(docs, "Deployment")["containers"][0]["args"]
    assert not any(a.startswith("--leader-elect") for a in args)
    assert not by_kind(docs, "PodDisruptionBudget")
    assert "selector" in one(docs, "Service", "fc-forensic-checkpoint-operator-alerts")["spec"]
    with pytest.raises(AssertionError, match=r"needs operator\.leaderElection\.enabled"):
        template(set_values=["operator.replicas=2", "operator.leaderElection.enabled=false"])
    with pytest.raises(AssertionError, match="retryPeriod < renewDeadline < leaseDuration"):
        template(set_values=["operator.leaderElection.renewDeadline=20"])


def test_agent_daemonset_least_privilege(rendered: list[dict[str, Any]]) -> None:
    spec = pod_spec(rendered, "DaemonSet")
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(key)
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container, _ = agent_containers(spec)
    ctx = container["securityContext"]
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["privileged"] is False
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["readOnlyRootFilesystem"] is True
    assert container["command"] == ["/bin/sh", "-c"]
    assert container["args"][1] == "agent"
    assert spec["tolerations"] and spec["nodeSelector"]

    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    host = {name: v["hostPath"]["path"] for name, v in volumes.items() if "hostPath" in v}
    assert host["checkpoints"] == "/var/lib/kubelet/checkpoints"
    assert host["state"] == "/var/lib/forensic-checkpoint"
    assert host["criu-config"] == "/etc/criu"
    criu_logs = {n: p for n, p in host.items() if n.startswith("criu-log-")}
    # files mode: the node's own certificate and key, provisioned on the node (read only).
    tls = {"tls"} if "--serving-certificate=files" in container["args"] else set()
    assert criu_logs and set(host) == {"checkpoints", "state", "criu-config", *criu_logs, *tls}
    assert all(mounts[name]["readOnly"] is True for name in tls)
    # The runtime's directories are the criu-log-reader's (test_chart_criu_logs.py).
    assert {n for n in mounts if n in host} == {"checkpoints", "state", "criu-config", *tls}
    values_cm = agent_values(rendered)
    criu_on = yaml.safe_load(values_cm)["criuConfig"]["enabled"]
    assert mounts["criu-config"]["readOnly"] is (not criu_on)


def test_agent_kubelet_credentials_follow_the_auth_mode() -> None:
    cert = pod_spec(render(None), "DaemonSet")
    args = cert["containers"][0]["args"]
    assert "--kubelet-client-cert=/etc/forensic-checkpoint/kubelet-client/tls.crt" in args
    assert "--kubelet-ca=/etc/forensic-checkpoint/kubelet-ca/ca.crt" in args
    assert {v["name"]: v for v in cert["volumes"]}["kubelet-client"]["secret"][
        "secretName"
    ] == "fc-forensic-checkpoint-kubelet-client"

    token_docs = documents(template(set_values=["kubelet.authMode=token"]))
    token = pod_spec(token_docs, "DaemonSet")
    args = token["containers"][0]["args"]
    assert "--kubelet-token-file=/var/run/secrets/kubernetes.io/serviceaccount/token" in args
    assert not any(a.startswith("--kubelet-client-cert") for a in args)
    assert "kubelet-client" not in {v["name"] for v in token["volumes"]}
    assert not any(
        "kubelet-client" in r["metadata"]["name"] for r in by_kind(token_docs, "ClusterRole")
    )


def agent_argv(container: dict[str, Any], tmp_path: Path, pod_ip: str) -> list[str]:
    """What the agent container really executes: Kubernetes' ``$$`` unescaping, then the
    chart's ``/bin/sh -c`` wrapper, with a stub ``forensic-checkpoint`` that records its argv."""
    stub = tmp_path / "bin" / "forensic-checkpoint"
    stub.parent.mkdir(exist_ok=True)
    stub.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    stub.chmod(0o755)
    argv = [a.replace("$$", "$") for a in container["command"] + container["args"]]
    env = {"PATH": f"{stub.parent}:/usr/bin:/bin", "POD_IP": pod_ip}
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
    return out.splitlines()


@pytest.mark.parametrize(
    ("pod_ip", "name"),
    [
        ("10.244.1.5", "10-244-1-5.forensic-checkpoint.pod.cluster.local"),
        ("fd00:10:244::5", "fd00-10-244--5.forensic-checkpoint.pod.cluster.local"),
    ],
)
def test_agent_advertises_its_pod_dns_name(tmp_path: Path, pod_ip: str, name: str) -> None:
    container, _ = agent_containers(pod_spec(render(None), "DaemonSet"))
    argv = agent_argv(container, tmp_path, pod_ip)
    assert argv[0] == "agent"
    assert f"--advertise-address={name}" in argv
    assert "--port=8443" in argv


def test_chart_ca_signs_per_node_certificates_the_operator_verifies(tmp_path: Path) -> None:
    """The chart's generated agents' CA (an RSA key from helm's genCA) is one the operator's
    signer can use, and a certificate it issues for node-a verifies at node-a's agent name only:
    the operator, verifying at node-b's name, refuses node-a's agent."""
    docs = render(None)
    secret = one(docs, "Secret")
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    assert set(data) == {"ca.crt", "ca.key"}
    ca = signing.load_ca(data["ca.crt"], data["ca.key"])
    key = ec.generate_private_key(ec.SECP256R1())
    request = x509.load_pem_x509_csr(keys.request_pem(key, SERVING.subject_for("node-a")))
    cert = signing.issue(
        request,
        subject=SERVING.subject_for("node-a"),
        ca=ca,
        now=datetime.now(UTC),
        valid_for=timedelta(hours=1),
    )
    keys.save(tmp_path / "serving.pem", key, cert)
    (tmp_path / "ca.crt").write_bytes(data["ca.crt"])
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "serving.pem", tmp_path / "serving.pem")
    client_ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))

    def handshake(name: str) -> None:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            port = listener.getsockname()[1]

            def serve() -> None:
                conn, _ = listener.accept()
                with contextlib.suppress(ssl.SSLError, OSError):
                    server_ctx.wrap_socket(conn, server_side=True).close()

            thread = threading.Thread(target=serve)
            thread.start()
            try:
                with socket.create_connection(("127.0.0.1", port)) as raw:
                    client_ctx.wrap_socket(raw, server_hostname=name).close()
            finally:
                thread.join(10)

    handshake(agent_server_name("node-a"))
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        handshake(agent_server_name("node-b"))


def test_the_agents_ca_certificate_is_published_for_archive_readers() -> None:
    """`kubectl forensic get-archive` verifies agents without --agent-ca-file: the certificate
    (never the key) is in a ConfigMap that the archive-reader Role may read, and nothing else of
    the namespace's ConfigMaps."""
    docs = render(None)
    published = one(docs, "ConfigMap", "fc-forensic-checkpoint-archive-reader-ca")
    assert set(published["data"]) == {"ca.crt"}
    secret = one(docs, "Secret")
    assert published["data"]["ca.crt"].encode() == base64.b64decode(secret["data"]["ca.crt"])
    role = one(docs, "Role", "fc-forensic-checkpoint-archive-reader")
    grants = {
        (r["resources"][0], tuple(r.get("resourceNames", ()))): r["verbs"] for r in role["rules"]
    }
    assert grants == {
        ("serviceaccounts/token", ("fc-forensic-checkpoint-archive-reader",)): ["create"],
        ("pods", ()): ["get", "list"],
        ("pods/portforward", ()): ["get", "create"],
        ("configmaps", ("fc-forensic-checkpoint-archive-reader-ca",)): ["get"],
    }
    assert role["metadata"]["namespace"] == published["metadata"]["namespace"]
    # deploy/rbac/archive-reader.yaml (what the plugin's cluster tests run with) is the same Role.
    proven = one(documents((REPO / "deploy" / "rbac" / "archive-reader.yaml").read_text()), "Role")
    chart = one(
        documents(template(release="forensic-checkpoint")), "Role", proven["metadata"]["name"]
    )
    assert proven["rules"] == chart["rules"]
    without = documents(template(set_values=["rbac.archiveReader=false"]))
    assert not [d for d in by_kind(without, "ConfigMap") if d["metadata"]["name"].endswith("-ca")]


def test_network_policy_admits_only_the_operator() -> None:
    docs = render(None)
    policy = one(docs, "NetworkPolicy", "fc-forensic-checkpoint-agent")
    agent_labels = one(docs, "DaemonSet")["spec"]["selector"]["matchLabels"]
    operator_labels = one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["podSelector"]["matchLabels"] == agent_labels
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (ingress,) = policy["spec"]["ingress"]
    assert ingress["from"] == [{"podSelector": {"matchLabels": operator_labels}}]


def test_agent_values_file_is_what_the_agent_readers_take(tmp_path: Path) -> None:
    token_values = next(p for p in CI_VALUES if p.stem == "token-auth-values")
    docs = render(token_values)
    values = yaml.safe_load(agent_values(docs))
    criu = CriuConfigSettings.from_values(values["criuConfig"])
    assert criu.enabled and criu.ghost_limit_bytes == 64 * 1024 * 1024
    assert not {"credentialsSecret", "retrySeconds"} & set(values["export"])

    # The credential files the ConfigMap names are the keys of the Secret volume at its mount.
    pod = pod_spec(docs, "DaemonSet")
    container = pod["containers"][0]
    assert not [e for e in container["env"] if e["name"].startswith("AWS_")], "no keys in env"
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "s3-credentials"]
    assert mount["readOnly"] is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == "s3-credentials"]
    assert volume["secret"]["secretName"] == "evidence-s3"
    mounted = {
        f"{mount['mountPath']}/{item['path']}": item["key"] for item in volume["secret"]["items"]
    }
    export = values["export"]
    assert mounted == {
        export["accessKeyIdFile"]: "AWS_ACCESS_KEY_ID",
        export["secretAccessKeyFile"]: "AWS_SECRET_ACCESS_KEY",
    }
    # The agent's own reader, with the Secret's files placed where the mount puts them.
    secret_files = {"AWS_ACCESS_KEY_ID": "AKIDCI", "AWS_SECRET_ACCESS_KEY": "ci-secret"}
    for path, key in mounted.items():
        local = tmp_path / path.lstrip("/")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text(secret_files[key] + "\n")
        export[{"AWS_ACCESS_KEY_ID": "accessKeyIdFile"}.get(key, "secretAccessKeyFile")] = str(
            local
        )
    config = export_config(export, state_dir=tmp_path / "state", node_name="n")
    assert config is not None
    assert (config.bucket, config.cluster, config.encrypt) == ("forensic-evidence", "ci", True)
    assert (config.access_key_id, config.secret_access_key) == ("AKIDCI", "ci-secret")

    policy = policy_from_values(values["retention"])
    assert policy == RetentionPolicy(
        node_limits=Limits(max_count=50, max_age=timedelta(days=7), max_bytes=50 * 2**30),
        container_default=Limits(max_count=5),
        container_rules=(
            ContainerRule(Limits(max_count=10, max_age=timedelta(days=30)), namespace="payments"),
        ),
        protect_unexported=True,
    )
    args = container["args"]
    for flag in ("--retention-interval=120", "--export-retry-seconds=30", "--log-format=json"):
        assert flag in args

    default_docs = render(None)
    default = yaml.safe_load(agent_values(default_docs))
    assert "export" not in default and "retention" not in default, "both are opt-in"
    assert CriuConfigSettings.from_values(default["criuConfig"]) == CriuConfigSettings()
    assert not [v for v in pod_spec(default_docs, "DaemonSet")["volumes"] if "s3" in v["name"]]


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("agent.bogus=1", "additional properties 'bogus' not allowed"),
        ("kubelet.authMode=anonymous", "authMode"),
        ("export.enabled=true", "bucket"),
        ("criuConfig.ghostLimitBytes=1024", "ghostLimitBytes"),
        ("criuConfig.actionScript=/tmp/x.sh", "additional properties 'actionScript' not allowed"),
        ("retention.node.maxAge=7x", "maxAge"),
        ("retention.containerRules[0].maxCount=-1", "maxCount"),
        ("agent.logFormat=xml", "logFormat"),
        ("captureNamespaces.deny={Kube_System}", "deny"),
    ],
)
def test_schema_refuses_bad_values(setting: str, complaint: str) -> None:
    with pytest.raises(AssertionError, match=complaint):
        template(set_values=[setting])


def test_deploy_manifest_has_not_drifted() -> None:
    assert DEPLOY_MANIFEST.read_text() == render_deploy(), "run `make deploy`"
    docs = documents(DEPLOY_MANIFEST.read_text())
    assert docs[0]["kind"] == "Namespace"
    assert not by_kind(docs, "Secret"), "no key material in git"


def test_alert_receiver_gets_exactly_its_documented_rules() -> None:
    from forensic_checkpoint.k8s.alert_captures import RBAC_RULES

    assert not [
        r for r in by_kind(render(None), "ClusterRole") if r["metadata"]["name"].endswith("-alerts")
    ]
    token_values = next(p for p in CI_VALUES if p.stem == "token-auth-values")
    docs = render(token_values)
    assert _rules_of(docs, "fc-forensic-checkpoint-operator-alerts") == [
        dict(r) for r in RBAC_RULES
    ]
    binding = one(docs, "ClusterRoleBinding", "fc-forensic-checkpoint-operator-alerts")
    assert binding["subjects"][0]["name"] == "fc-forensic-checkpoint-operator"
    args = pod_spec(docs, "Deployment")["containers"][0]["args"]
    assert "--alerts-token-file=/etc/forensic-checkpoint/alerts/token" in args
    assert (
        one(docs, "Service", "fc-forensic-checkpoint-operator-alerts")["spec"]["ports"][0]["port"]
        == 9095
    )


@pytest.mark.parametrize("kind", ["Deployment", "DaemonSet"])
def test_container_args_parse_with_the_real_cli(
    rendered: list[dict[str, Any]], kind: str, tmp_path: Path
) -> None:
    """The flags the chart passes are flags the operator and agent accept (a renamed flag would
    otherwise only show as a crash-looping pod)."""
    import argparse
    import importlib

    container = agent_containers(pod_spec(rendered, kind))[0] if kind == "DaemonSet" else None
    if container is not None:
        command, *args = agent_argv(container, tmp_path, "10.0.0.7")
    else:
        (container,) = pod_spec(rendered, kind)["containers"]
        command, *args = container["args"]
    module = importlib.import_module(f"forensic_checkpoint.cli.{command}")
    parser = argparse.ArgumentParser(exit_on_error=False)
    module.add_arguments(parser)
    parsed = parser.parse_args(args)
    if command == "agent":
        assert parsed.advertise_address.startswith("10-0-0-7.")
        assert parsed.operator_identity.startswith("system:serviceaccount:")
        assert str(parsed.checkpoint_dir) == "/var/lib/kubelet/checkpoints"
    else:
        assert parsed.all_namespaces or parsed.namespace
        assert str(parsed.agent_ca_file) == "/etc/forensic-checkpoint/agent-ca/ca.crt"


@pytest.mark.parametrize(
    "set_values",
    [
        [],
        ["agent.podLabels.team=ir", "operator.podLabels.team=ir"],
        # A pod label that names a selector key keeps the selector's value.
        ["agent.podLabels.app\\.kubernetes\\.io/component=other"],
    ],
    ids=["default", "pod-labels", "pod-label-on-a-selector-key"],
)
def test_every_mapping_has_each_key_once(set_values: list[str]) -> None:
    """Pod templates used to repeat the selector's label keys after the chart's (valid for
    PyYAML, which keeps the last, refused by kubeconform -strict and kubectl kustomize)."""
    docs = documents(template(set_values=set_values))  # StrictLoader: a duplicate key raises
    for workload in by_kind(docs, "DaemonSet") + by_kind(docs, "Deployment"):
        selector = workload["spec"]["selector"]["matchLabels"]
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), (selector, labels)
        if set_values and "team" in set_values[0]:
            assert labels["team"] == "ir"
    documents((REPO / "deploy" / "forensic-checkpoint.yaml").read_text())


def test_the_operator_pod_accepts_only_its_metrics_and_alert_ports() -> None:
    def operator_policy(set_values: list[str]) -> dict[str, Any]:
        docs = documents(template(set_values=set_values))
        spec: dict[str, Any] = one(docs, "NetworkPolicy", "fc-forensic-checkpoint-operator")["spec"]
        return spec

    plain = operator_policy([])
    assert plain["policyTypes"] == ["Ingress"]
    assert plain["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"
    assert not plain.get("ingress")  # nothing may connect (probes are not subject to it)
    prometheus = [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]
    alerts = operator_policy(
        [
            "alerts.enabled=true",
            "alerts.tokenSecret.name=t",
            "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.name=monitoring",
        ]
    )
    assert alerts["ingress"] == [
        {"from": prometheus, "ports": [{"port": "metrics", "protocol": "TCP"}]},
        {"ports": [{"port": "alerts", "protocol": "TCP"}]},  # any peer: the token guards it
    ]
    narrowed = operator_policy(
        [
            "alerts.enabled=true",
            "alerts.tokenSecret.name=t",
            "networkPolicy.alertsFrom[0].namespaceSelector.matchLabels.name=monitoring",
        ]
    )
    assert narrowed["ingress"] == [
        {"from": prometheus, "ports": [{"port": "alerts", "protocol": "TCP"}]}
    ]
    docs = documents(template(set_values=["networkPolicy.enabled=false"]))
    assert by_kind(docs, "NetworkPolicy") == []


def test_the_chart_readme_lists_every_value_with_its_comment() -> None:
    """charts/forensic-checkpoint/README.md is generated from values.yaml (`make chart-readme`);
    every value it lists has a `# --` comment."""
    assert (CHART / "README.md").read_text() == chart_readme.render(), "run `make chart-readme`"
    values = chart_readme.chart_values((CHART / "values.yaml").read_text())
    assert [v.path for v in values if not v.description] == []
    by_path = {v.path: v for v in values}
    assert by_path["agent.resources"].type == "object"  # a documented mapping is one row
    assert by_path["agent.captureWorkers"].default == "4"
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["kubeVersion"] and chart["sources"] and chart["maintainers"] and chart["icon"]
    images = yaml.safe_load(chart["annotations"]["artifacthub.io/images"])
    assert images[0]["image"].endswith(f":{chart['appVersion']}")
    crds = {c["name"] for c in yaml.safe_load(chart["annotations"]["artifacthub.io/crds"])}
    assert crds == {p.name.removesuffix(".yaml") for p in (REPO / "crds").glob("*.yaml")}
