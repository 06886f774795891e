"""Findings: what is wrong in a checkpoint, not only what is in it.

Rules live in ``rules.yaml`` (data, each with its source); ``engine.find`` evaluates them over
facts drawn from the report and the archive's images. This package's ``__init__`` imports
nothing, so ``report.py`` can import ``findings.model`` without a cycle.
"""
