"""Findings: what is wrong in a checkpoint, not only what is in it.

Rules live in ``rules.yaml`` (data, each with its source); ``engine.find`` evaluates them over
facts drawn from the report and the archive's images (``facts``, ``process_facts``,
``connections``); ``run.FindingsPass`` feeds them memory, files and queues during the analysis.
The finding dataclasses are part of the report model (``analysis.model.findings``).
"""
