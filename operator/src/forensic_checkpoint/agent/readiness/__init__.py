"""The node's readiness: the probe rounds behind the ForensicNode's checks, and the CRIU
configuration file the agent keeps on the node (docs/capture-readiness.md)."""
