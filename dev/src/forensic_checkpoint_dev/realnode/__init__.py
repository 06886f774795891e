"""One real node: containerd, runc, CRIU and a kubelet next to the dev control plane."""
