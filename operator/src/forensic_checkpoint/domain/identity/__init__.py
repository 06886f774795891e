"""The agents' certificates (pure): what each of the two kinds certifies for a node
(:mod:`.profiles`: serving, kubelet client), which certificate request the operator signs for a
node's agent (:mod:`.agent_certificates`), the certificate it issues (:mod:`.signing`), and when
an agent renews its own (:mod:`.renewal`). Names: :mod:`forensic_checkpoint.agent_identity`."""
