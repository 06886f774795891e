"""The dev cluster: a local control plane (etcd, kube-apiserver, kube-controller-manager),
its certificates, tool binaries, processes, identities and running pods."""
