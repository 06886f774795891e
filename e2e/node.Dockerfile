# kind's node image plus CRIU, which containerd needs for checkpoints (criu on its PATH).
ARG KIND_NODE=kindest/node:v1.34.0
FROM ${KIND_NODE}
# The criu version is the node image's Debian release's (KIND_NODE picks it), so it is not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends criu \
    && rm -rf /var/lib/apt/lists/* \
    && criu --version
