"""The operator's watch on the agents' heartbeats: a ForensicNode whose agent stopped turns
``Ready`` Unknown (:mod:`forensic_checkpoint.domain.readiness.liveness`)."""
