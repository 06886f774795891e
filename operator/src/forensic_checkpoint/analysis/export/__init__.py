"""Exports of a report for other tools: Timesketch JSONL, a STIX 2.1 bundle, offline HTML."""
