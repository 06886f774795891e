"""What in-cluster pods need beside the kubelet, as on kubeadm: kube-proxy (iptables mode), so
that pods reach the `kubernetes` Service and every other ClusterIP, CoreDNS serving
``cluster.local`` as the ``kube-dns`` Service, which the kubelet gives pods as their DNS, and a
NetworkPolicy enforcer: the bridge CNI enforces none, so kube-router runs its firewall alone
(``--run-router=false --run-service-proxy=false``), as on clusters whose CNI routes but does
not filter.

They run as host processes of the dev cluster, like the kubelet (kubeadm runs them as a
host-network DaemonSet and a Deployment; no image registry is reachable here). CoreDNS listens
on the node's address on a free port; the ``kube-dns`` Service (ClusterIP ``DNS_SERVICE_IP``,
port 53) reaches it through an EndpointSlice of ours, so a pod's query takes the same path as on
a real cluster: resolv.conf -> ClusterIP -> kube-proxy's DNAT -> CoreDNS -> the API server.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubernetes import client as k8s

from forensic_checkpoint.errors import ToolError
from forensic_checkpoint.k8s.client import ApiClient
from forensic_checkpoint_dev.apiserver import call
from forensic_checkpoint_dev.cluster import access, binaries, pki, processes
from forensic_checkpoint_dev.cluster.components import SERVICE_CIDR
from forensic_checkpoint_dev.realnode.host import POD_SUBNET

if TYPE_CHECKING:
    from forensic_checkpoint_dev.realnode.node import RealNode, Spawn

#: Started after the kubelet, stopped before it (kube-proxy would put its chains back).
COMPONENTS = ("kube-proxy", "kube-router", "coredns")
CLUSTER_DOMAIN = "cluster.local"
DNS_SERVICE_IP = "10.96.0.10"
DNS_USER = "system:coredns"
#: kubeadm's ClusterRole for CoreDNS (the API server has no bootstrap role for it).
DNS_RULES = [
    {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
     "verbs": ["list", "watch"]},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
     "verbs": ["list", "watch"]},
]  # fmt: skip
#: What kube-router's firewall reads (its upstream ClusterRole, less the router's and proxy's).
ROUTER_USER = "system:kube-router"
ROUTER_RULES = [
    {"apiGroups": [""], "resources": ["namespaces", "pods", "services", "nodes", "endpoints"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
     "verbs": ["get", "list", "watch"]},
]  # fmt: skip
ROUTER_LAUNCH = "kube-router-launch.json"
READY_TIMEOUT = 60.0


def choose_ports() -> dict[str, int]:
    """CoreDNS's DNS and readiness ports, kube-proxy's health and metrics ports, kube-router's
    health port."""
    names = ("dns", "dnsReady", "proxyHealth", "proxyMetrics", "routerHealth")
    return {name: processes.free_port() for name in names}


def kube_proxy_config(node: RealNode, kubeconfig: Path) -> dict[str, Any]:
    ports = node.addon_ports
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "clusterCIDR": POD_SUBNET,
        "hostnameOverride": node.name,
        "healthzBindAddress": f"127.0.0.1:{ports['proxyHealth']}",
        "metricsBindAddress": f"127.0.0.1:{ports['proxyMetrics']}",
        # Leave the machine's conntrack sysctls and route_localnet as they are: a dev cluster
        # is taken down again, and those would outlive it.
        "conntrack": {"maxPerCore": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "iptables": {"localhostNodePorts": False},
    }


def kube_router_argv(node: RealNode, tools: binaries.NodeTools, kubeconfig: Path) -> list[str]:
    """kube-router with its NetworkPolicy firewall only: no BGP routes, no service proxy
    (kube-proxy's), no metrics server."""
    return [
        str(tools.kube_router),
        "--run-firewall=true",
        "--run-router=false",
        "--run-service-proxy=false",
        f"--kubeconfig={kubeconfig}",
        f"--hostname-override={node.name}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--health-port={node.addon_ports['routerHealth']}",
        "--v=1",
    ]


def corefile(node: RealNode, kubeconfig: Path) -> str:
    """kubeadm's Corefile, bound to the node's address on our port."""
    ports = node.addon_ports
    return f"""\
.:{ports["dns"]} {{
    bind {node.ip}
    errors
    ready 127.0.0.1:{ports["dnsReady"]}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    forward . /etc/resolv.conf
    cache 30
    loop
    loadbalance
}}
"""


def start(
    node: RealNode,
    base: Path,
    *,
    server: str,
    ca: pki.CertPair,
    spawn: Spawn,
    tools: binaries.NodeTools,
    env: dict[str, str],
) -> None:
    """Start kube-proxy and CoreDNS, and prepare kube-router (:func:`start_firewall`), with
    their own identities (``system:kube-proxy`` is bound to ``system:node-proxier`` by the API
    server's bootstrap policy; CoreDNS's and kube-router's roles are :func:`publish`'s)."""
    etc = base / "etc"
    kubeconfigs = {}
    users = (
        ("kube-proxy", "system:kube-proxy"),
        ("kube-router", ROUTER_USER),
        ("coredns", DNS_USER),
    )
    for name, user in users:
        cert = pki.issue(ca, pki.CertPair(base / f"{name}.crt", base / f"{name}.key"), user,
                         client=True)  # fmt: skip
        kubeconfigs[name] = base / f"{name}.kubeconfig"
        pki.write_kubeconfig(kubeconfigs[name], server, ca.cert, cert)
    proxy_config = etc / "kube-proxy.json"
    config = kube_proxy_config(node, kubeconfigs["kube-proxy"])
    proxy_config.write_text(json.dumps(config, indent=2))
    spawn("kube-proxy", [str(tools.kube_proxy), f"--config={proxy_config}", "--v=1"], env)
    # kube-router needs its Node object at start: start_firewall runs it once the node is up.
    launch = {"argv": kube_router_argv(node, tools, kubeconfigs["kube-router"]), "env": env}
    (etc / ROUTER_LAUNCH).write_text(json.dumps(launch, indent=2))
    core = etc / "Corefile"
    core.write_text(corefile(node, kubeconfigs["coredns"]))
    spawn("coredns", [str(tools.coredns), "-conf", str(core)], env)


def start_firewall(node_dir: Path, spawn: Spawn) -> None:
    """Start kube-router (as :func:`start` prepared it in ``node_dir``); its NetworkPolicy
    controller exits at once unless the Node object exists, so only after the kubelet
    registered it."""
    launch = json.loads((node_dir / "etc" / ROUTER_LAUNCH).read_text())
    spawn("kube-router", launch["argv"], launch["env"])


def publish(api: ApiClient, node: RealNode) -> None:
    """CoreDNS's RBAC, and the ``kube-dns`` Service with the EndpointSlice that points it at
    CoreDNS on the node."""
    for user, rules in ((DNS_USER, DNS_RULES), (ROUTER_USER, ROUTER_RULES)):
        access.create_cluster_role(api, user, rules)
        access.bind_cluster_role(api, user, user, [access.user(user)])
    port = node.addon_ports["dns"]
    names = (("dns", "UDP"), ("dns-tcp", "TCP"))
    labels = {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
        "spec": {
            "clusterIP": DNS_SERVICE_IP,
            "ports": [
                {"name": n, "port": 53, "protocol": proto, "targetPort": port} for n, proto in names
            ],
        },
    }
    core = k8s.CoreV1Api(api)
    call("create service kube-dns", core.create_namespaced_service, "kube-system", service)
    endpoints = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kube-dns-coredns",
            "namespace": "kube-system",
            "labels": {
                "kubernetes.io/service-name": "kube-dns",
                "endpointslice.kubernetes.io/managed-by": "forensic-checkpoint-dev",
            },
        },
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": [node.ip], "conditions": {"ready": True}, "nodeName": node.name}
        ],
        "ports": [{"name": n, "port": port, "protocol": proto} for n, proto in names],
    }
    call(
        "create endpointslice kube-dns",
        k8s.DiscoveryV1Api(api).create_namespaced_endpoint_slice,
        "kube-system",
        endpoints,
    )


def wait_ready(node: RealNode) -> None:
    """Until kube-proxy has programmed its rules, kube-router its firewall and CoreDNS has
    synced with the API server."""
    ports = node.addon_ports
    for what, url in (
        ("kube-proxy", f"http://127.0.0.1:{ports['proxyHealth']}/healthz"),
        ("kube-router", f"http://127.0.0.1:{ports['routerHealth']}/healthz"),
        ("coredns", f"http://127.0.0.1:{ports['dnsReady']}/ready"),
    ):
        if not processes.wait_until(partial(processes.http_ok, url), READY_TIMEOUT, interval=0.2):
            raise ToolError(f"{what} not ready within {READY_TIMEOUT:.0f} s ({url})")
