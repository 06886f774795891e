"""CRIU's image messages, generated at build time from ``third_party/criu/images/*.proto``.

``tools/criu_protos.py`` writes the ``*_pb2`` modules and ``field_options.json`` here (the
wheel's build hook runs it; they are not in git). Only ``analysis.format`` reads them.
"""
