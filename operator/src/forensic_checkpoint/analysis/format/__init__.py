"""The checkpoint archive format: the tar/zstd stream and CRIU images (the only users of pycriu)."""
