"""What a real node needs before it starts: containerd's, CNI's and the kubelet's
configuration, and the locally built images imported into containerd."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from forensic_checkpoint_dev import image
from forensic_checkpoint_dev.cluster import binaries, pki
from forensic_checkpoint_dev.realnode.addons import CLUSTER_DOMAIN, DNS_SERVICE_IP
from forensic_checkpoint_dev.realnode.host import BRIDGE, POD_SUBNET

if TYPE_CHECKING:
    from forensic_checkpoint_dev.realnode.node import RealNode


def containerd_config(node: RealNode, tools: binaries.NodeTools, etc: Path) -> str:
    cri = 'plugins."io.containerd.cri.v1'
    pause = tools.image_names["pause"]  # pinned, so containerd never tries to pull its own
    return f"""\
version = 3
root = "{node.containerd_root}"
state = "{node.containerd_state}"

[grpc]
  address = "{node.containerd_socket}"

[ttrpc]
  address = "{node.run_dir}/containerd.sock.ttrpc"

[metrics]
  address = "127.0.0.1:{node.metrics_port}"

[{cri}.images"]
  snapshotter = "overlayfs"
  [{cri}.images".pinned_images]
    sandbox = "{pause}"

[{cri}.runtime"]
  # Root without CAP_SYS_RESOURCE cannot lower oom_score_adj below containerd's own: without
  # this every sandbox fails "can't get final child's PID from pipe: EOF". Production nodes
  # need no such setting.
  restrict_oom_score_adj = true
  # Network namespaces under our state directory, so `down` finds every one of them.
  netns_mounts_under_state_dir = true
  [{cri}.runtime".containerd]
    default_runtime_name = "runc"
    [{cri}.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.runtime".containerd.runtimes.runc.options]
        # runc with --criu pointing at the CRIU built by `make node-tools`.
        BinaryName = "{tools.runc_wrapper}"
        SystemdCgroup = false
  [{cri}.runtime".cni]
    bin_dirs = ["{tools.cni_bin_dir}"]
    conf_dir = "{etc / "cni"}"
"""


def cni_config(node: RealNode) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "fcp-realnode",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_SUBNET}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(node.run_dir / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(node: RealNode, client_ca: Path, serving: pki.CertPair) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,  # 1.35+ refuses a cgroup v1 host otherwise
        "failSwapOn": False,
        "cgroupDriver": "cgroupfs",
        "containerRuntimeEndpoint": f"unix://{node.containerd_socket}",
        "address": node.ip,
        "port": node.port,
        "readOnlyPort": 0,
        "healthzPort": 0,
        "tlsCertFile": str(serving.cert),
        "tlsPrivateKeyFile": str(serving.key),
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True, "cacheTTL": "10s"},
            "x509": {"clientCAFile": str(client_ca)},
        },
        "authorization": {
            "mode": "Webhook",
            "webhook": {"cacheAuthorizedTTL": "10s", "cacheUnauthorizedTTL": "5s"},
        },
        "featureGates": {"ContainerCheckpoint": True},
        "resolvConf": "/etc/resolv.conf",
        # CoreDNS behind the kube-dns Service (realnode.addons), as on kubeadm.
        "clusterDNS": [DNS_SERVICE_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        "staticPodPath": "",
        "imageGCHighThresholdPercent": 100,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
        },
        "protectKernelDefaults": False,
        "syncFrequency": "10s",
        "nodeStatusReportFrequency": "10s",
    }


def import_images(node: RealNode, tools: binaries.NodeTools) -> None:
    """Import each locally built image once per content store (a marker names its digest)."""
    for key, tar in sorted(tools.images.items()):
        import_image(node, tools, key, tar)


def import_image(node: RealNode, tools: binaries.NodeTools, key: str, tar: Path) -> None:
    """Import one OCI archive unless this content store already holds this file of ``key``."""
    marker = node.containerd_root / f".imported-{key}-{_file_id(tar)}"
    if marker.exists():
        return
    image.import_archive(tools.ctr, node.containerd_socket, tar, unpack=False)
    for old in node.containerd_root.glob(f".imported-{key}-*"):
        old.unlink()
    marker.touch()


def _file_id(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size:x}{int(st.st_mtime):x}"
