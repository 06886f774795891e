"""Entry points of the analyzer: analyze, diff, list, show-file, search, and what they share
(redaction, pruning to a subtree, heap tuning)."""
