# syntax=docker/dockerfile:1
# One image for every role; the first argument selects it (the chart passes it):
#   operator | agent | analyze ARCHIVE | verify ... | nodes | kubectl-forensic (as the command)
# Debian bookworm's own python3. No CRIU: the analyzer decodes CRIU images itself, with modules
# generated from CRIU's protos when the wheel is built (third_party/criu, tools/criu_protos.py).
# Python dependencies are installed only from the hash-pinned deploy/image/requirements.lock,
# by deploy/image/install-python-env.sh, which tests/install/test_image.py also runs.
# `make image` builds this file with buildah, BASE being a local debootstrap of the same release
# (tools/image/debian-base.sh), and tests/install/test_image_archive.py checks what it made.
ARG BASE=debian:bookworm-slim

FROM ${BASE} AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3=3.11.2-1+b1 \
        python3-venv=3.11.2-1+b1 \
        ca-certificates=20250419~deb12u2 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md LICENSE hatch_build.py ./
# The wheel's build hook generates the CRIU image modules from these protos.
COPY third_party/criu third_party/criu
COPY tools/criu_protos.py tools/criu_protos.py
COPY operator/src operator/src
COPY deploy/image deploy/image
# pip and setuptools only install: the final stage does not get them. Nor does the kubernetes
# client's asyncio variant (64 MB, half the package), which nothing imports: the operator uses the
# synchronous client, and kopf its own aiohttp calls.
RUN sh deploy/image/install-python-env.sh /opt/forensic-checkpoint /src \
    && /opt/forensic-checkpoint/bin/python -m pip uninstall --yes --quiet pip setuptools \
    && rm -r /opt/forensic-checkpoint/lib/python3.11/site-packages/kubernetes/aio

FROM ${BASE}
# ca-certificates verifies S3 and the API server.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3=3.11.2-1+b1 \
        ca-certificates=20250419~deb12u2 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 65532 forensic \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin forensic
# The venv keeps the .pyc files pip compiled, on purpose: the root filesystem is read-only in the
# pods, so without them every start would compile the imports again (about 2 s of CPU).
COPY --from=build /opt/forensic-checkpoint /opt/forensic-checkpoint
ENV PATH=/opt/forensic-checkpoint/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Non-root by default (operator, analyze, verify). The agent alone runs as uid 0, set by the
# chart's securityContext, with every capability dropped: see the DaemonSet for why.
USER 65532:65532
WORKDIR /tmp
ENTRYPOINT ["forensic-checkpoint"]
CMD ["--help"]
