"""The fake kubelet: the checkpoint API of a node, with faults a test can ask for."""
