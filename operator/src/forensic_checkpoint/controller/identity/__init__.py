"""The operator as the signer of the agents' certificates (``forensic-checkpoint.dev/
agent-serving`` and ``forensic-checkpoint.dev/kubelet-client``): it approves and signs each
agent's CertificateSigningRequest for its own node, and denies every other
(:mod:`forensic_checkpoint.domain.identity.agent_certificates`)."""
