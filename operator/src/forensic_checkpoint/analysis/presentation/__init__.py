"""Presentation of a report: text (rich), JSON and YAML renderers (``render.render_report``)
and exports for other tools (Timesketch JSONL, STIX 2.1, offline HTML)."""
