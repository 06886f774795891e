"""Leader election: a replica acts (kopf and every loop of its own) only while it holds the
operator's Lease, and exits the process when it loses it (crash-only)."""
