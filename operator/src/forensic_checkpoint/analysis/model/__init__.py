"""The report model: dataclasses written as camelCase JSON, and the findings they carry."""
