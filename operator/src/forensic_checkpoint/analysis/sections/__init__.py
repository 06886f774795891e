"""Report sections built from the CRIU images: processes, files, rootfs, identity, timeline,
shared memory, and the memory pass that reads argv/environment and searches pages."""
