"""The operator as the signer of the agents' serving certificates (``forensic-checkpoint.dev/
agent-serving``): it approves and signs each agent's CertificateSigningRequest for its own node,
and denies every other (:mod:`forensic_checkpoint.domain.identity.agent_certificates`)."""
