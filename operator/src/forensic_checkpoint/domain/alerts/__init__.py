"""Alert-driven capture, decided: the alert's shape, the policy gate, storm limits, the target
pod and the ForensicCheckpoint a capture creates (docs/alerts.md)."""
