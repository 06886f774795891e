"""Evidence decisions: the hash-chained chain of custody, the operator's entries in it, the
retention plan, and what a deleted ForensicCheckpoint removes (docs/evidence.md)."""
