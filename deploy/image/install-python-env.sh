#!/bin/sh
# Builds the image's Python environment; the Dockerfile runs exactly this, and
# tests/install/test_image.py runs it into a clean venv on the host, so the two cannot differ.
#
#   install-python-env.sh VENV SOURCE_DIR
#
# Dependencies come only from the hash-pinned lock (pip refuses anything unpinned or altered);
# the package itself is built from SOURCE_DIR without dependencies (its build hook generates the
# CRIU image modules from the vendored protos, so no CRIU or pycriu is needed). The bytecode is
# compiled once, hash-based and unchecked: the image's root filesystem is read-only (nothing could
# be cached at run time) and its files never change, while the timestamps a .pyc would be checked
# against do not survive the image's layers exactly.
set -eu
venv=$1
src=$2

python3 -m venv "$venv"
"$venv/bin/pip" install --no-cache-dir --disable-pip-version-check --no-compile --require-hashes \
    --no-deps \
    -r "$src/deploy/image/requirements.lock"
wheels=$(mktemp -d)
"$venv/bin/pip" wheel --no-cache-dir --disable-pip-version-check --no-deps -w "$wheels" "$src"
"$venv/bin/pip" install --no-cache-dir --disable-pip-version-check --no-compile --no-deps --no-index \
    "$wheels"/*.whl
rm -rf "$wheels"

site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$venv/bin/python" -m compileall -q -f -j 0 --invalidation-mode unchecked-hash "$site"

"$venv/bin/pip" check
"$venv/bin/python" -c 'import forensic_checkpoint.cli.main, forensic_checkpoint.analysis.format.criu_proto.pagemap_pb2'
