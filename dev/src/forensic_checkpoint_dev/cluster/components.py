"""The control plane's parts: its certificates (``ClusterPki``) and the command lines of etcd,
kube-apiserver, kube-controller-manager and kube-scheduler."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from forensic_checkpoint_dev.cluster import pki

ADMIN_USER = "forensic-checkpoint-admin"
#: Controllers the dev cluster needs; node lifecycle and friends are left out on purpose.
CONTROLLERS = (
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "namespace-controller",
    "garbage-collector-controller",
    "certificatesigningrequest-signing-controller",
    "certificatesigningrequest-approving-controller",
    "certificatesigningrequest-cleaner-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
)
#: With a real node, pods really run: the controllers that turn Deployments and DaemonSets into
#: pods and Services into endpoints (what `helm install` of a chart needs), as on kubeadm.
WORKLOAD_CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "daemonset-controller",
    "endpoints-controller",
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    "job-controller",
    "pod-garbage-collector-controller",
)
#: The `kubernetes` Service's ClusterIP: the first address of --service-cluster-ip-range.
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"


class ClusterPki:
    """Where the control plane's certificates and keys are, and how they are made."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ca = self._pair("ca")
        self.kubelet_ca = self._pair("kubelet-ca")
        self.apiserver = self._pair("apiserver")
        self.etcd = self._pair("etcd-server")
        self.etcd_client = self._pair("apiserver-etcd-client")
        self.kubelet_client = self._pair("apiserver-kubelet-client")
        self.admin = self._pair("admin")
        self.kcm = self._pair("kube-controller-manager")
        self.scheduler = self._pair("kube-scheduler")
        #: forensic-checkpoint's kubelet client CA (signer forensic-checkpoint.dev/kubelet-client):
        #: the fake kubelets trust it beside the cluster CA, through ``client_ca_bundle``, as an
        #: installation appends it to the kubelets' clientCAFile; the API server does not.
        self.forensic_kubelet_client_ca = self._pair("forensic-kubelet-client-ca")
        self.client_ca_bundle = root / "kubelet-client-ca-bundle.crt"
        self.sa_key = root / "sa.key"
        self.sa_pub = root / "sa.pub"

    def _pair(self, stem: str) -> pki.CertPair:
        return pki.CertPair(self.root / f"{stem}.crt", self.root / f"{stem}.key")

    def node_client(self, name: str) -> pki.CertPair:
        return self._pair(f"node-{name}-client")

    def node_serving(self, name: str) -> pki.CertPair:
        return self._pair(f"node-{name}-serving")

    def create(self, node_names: Sequence[str], node_address: str = "127.0.0.1") -> None:
        pki.create_ca(self.ca, "forensic-checkpoint-dev-ca")
        pki.create_ca(self.kubelet_ca, "forensic-checkpoint-dev-kubelet-serving-ca")
        pki.create_ca(self.forensic_kubelet_client_ca, "forensic-checkpoint-kubelet-client-ca")
        self.client_ca_bundle.write_bytes(
            self.ca.cert.read_bytes() + self.forensic_kubelet_client_ca.cert.read_bytes()
        )
        local = ("127.0.0.1", "localhost")
        pki.issue(
            self.ca,
            self.apiserver,
            "kube-apiserver",
            # What in-cluster clients dial: the Service's ClusterIP and names, the node's address.
            server_names=(
                *local,
                node_address,
                KUBERNETES_SERVICE_IP,
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
        )
        pki.issue(self.ca, self.etcd, "etcd", server_names=local, also_client=True)
        pki.issue(self.ca, self.etcd_client, "kube-apiserver-etcd-client", client=True)
        pki.issue(self.ca, self.kubelet_client, "kube-apiserver-kubelet-client", client=True)
        pki.issue(self.ca, self.admin, ADMIN_USER, organizations=("system:masters",), client=True)
        pki.issue(self.ca, self.kcm, "system:kube-controller-manager", client=True)
        pki.issue(self.ca, self.scheduler, "system:kube-scheduler", client=True)
        pki.create_signing_key(self.sa_key, self.sa_pub)
        for name in node_names:
            pki.issue(
                self.ca,
                self.node_client(name),
                f"system:node:{name}",
                organizations=("system:nodes",),
                client=True,
            )
            pki.issue(
                self.kubelet_ca,
                self.node_serving(name),
                name,
                server_names=(*local, node_address, name),
            )


# --- command lines ------------------------------------------------------------------------


def etcd_args(etcd: Path, data: Path, p: ClusterPki, port: int, peer: int) -> list[str]:
    client_url = f"https://127.0.0.1:{port}"
    peer_url = f"http://127.0.0.1:{peer}"
    return [
        str(etcd),
        "--name=dev",
        f"--data-dir={data}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=dev={peer_url}",
        f"--cert-file={p.etcd.cert}",
        f"--key-file={p.etcd.key}",
        f"--trusted-ca-file={p.ca.cert}",
        "--client-cert-auth=true",
        "--listen-metrics-urls=",
        "--unsafe-no-fsync=true",  # a throwaway cluster: durability costs start-up time
        "--log-level=warn",
    ]


def apiserver_args(
    binary: Path, p: ClusterPki, etcd_port: int, port: int, advertise: str | None = None
) -> list[str]:
    """``advertise``: the node address pods reach the API server at (a real node's cluster).
    The API server then listens on every address and keeps the `kubernetes` Service's
    endpoints itself (lease reconciler), so kube-proxy routes the ClusterIP to it; without,
    it listens on loopback only and the Service has no endpoints (no pod runs)."""
    if advertise is None:
        listen = ["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1"]
        listen.append("--endpoint-reconciler-type=none")
    else:
        listen = ["--bind-address=0.0.0.0", f"--advertise-address={advertise}"]
        listen.append("--endpoint-reconciler-type=lease")
    return [
        str(binary),
        f"--etcd-servers=https://127.0.0.1:{etcd_port}",
        f"--etcd-cafile={p.ca.cert}",
        f"--etcd-certfile={p.etcd_client.cert}",
        f"--etcd-keyfile={p.etcd_client.key}",
        *listen,
        f"--secure-port={port}",
        f"--tls-cert-file={p.apiserver.cert}",
        f"--tls-private-key-file={p.apiserver.key}",
        f"--client-ca-file={p.ca.cert}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={p.sa_pub}",
        f"--service-account-signing-key-file={p.sa_key}",
        "--api-audiences=https://kubernetes.default.svc.cluster.local",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--kubelet-client-certificate={p.kubelet_client.cert}",
        f"--kubelet-client-key={p.kubelet_client.key}",
        f"--kubelet-certificate-authority={p.kubelet_ca.cert}",
        "--kubelet-preferred-address-types=InternalIP",
        "--allow-privileged=true",
        "--v=1",
    ]


def controller_args(binary: Path, kubeconfig: Path) -> list[str]:
    """What the controller manager and the scheduler share: one identity, no serving port, no
    leader election (one of each)."""
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        "--secure-port=0",
        "--leader-elect=false",
        "--v=1",
    ]


def kcm_args(
    binary: Path, p: ClusterPki, kubeconfig: Path, *, workloads: bool = False
) -> list[str]:
    """``workloads``: also the controllers that make pods (a real node runs them); fake
    kubelets run no pods, so their clusters leave Deployments and DaemonSets alone."""
    controllers = CONTROLLERS + (WORKLOAD_CONTROLLERS if workloads else ())
    return [
        *controller_args(binary, kubeconfig),
        f"--controllers={','.join(controllers)}",
        f"--cluster-signing-cert-file={p.ca.cert}",
        f"--cluster-signing-key-file={p.ca.key}",
        f"--root-ca-file={p.ca.cert}",
        f"--service-account-private-key-file={p.sa_key}",
        "--use-service-account-credentials=true",  # per-controller identities, as in real clusters
    ]
