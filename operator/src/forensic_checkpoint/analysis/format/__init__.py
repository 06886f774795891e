"""The checkpoint archive format: the tar/zstd stream and CRIU images (the only readers of the
CRIU modules generated into ``criu_proto``)."""
