#!/bin/sh
# Builds the image's Python environment; the Dockerfile runs exactly this, and
# tests/install/test_image.py runs it into a clean venv on the host, so the two cannot differ.
#
#   install-python-env.sh VENV SOURCE_DIR
#
# Dependencies come only from the hash-pinned lock (pip refuses anything unpinned or altered);
# the package itself is built from SOURCE_DIR without dependencies. pycriu is not on PyPI: it
# comes from Debian's criu package, and only its directory is exposed to the venv, so Debian's
# own protobuf stays out (pycriu's pb2 modules need the lock's protobuf < 7).
set -eu
venv=$1
src=$2
pycriu=${PYCRIU_DIR:-/usr/lib/python3/dist-packages/pycriu}

python3 -m venv "$venv"
"$venv/bin/pip" install --no-cache-dir --disable-pip-version-check --require-hashes --no-deps \
    -r "$src/deploy/image/requirements.lock"
wheels=$(mktemp -d)
"$venv/bin/pip" wheel --no-cache-dir --disable-pip-version-check --no-deps -w "$wheels" "$src"
"$venv/bin/pip" install --no-cache-dir --disable-pip-version-check --no-deps --no-index "$wheels"/*.whl
rm -rf "$wheels"

site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p "$venv/debian-pycriu"
ln -sfn "$pycriu" "$venv/debian-pycriu/pycriu"
echo "$venv/debian-pycriu" > "$site/debian-pycriu.pth"

"$venv/bin/pip" check
"$venv/bin/python" -c 'import forensic_checkpoint.cli.main, pycriu.images.pagemap_pb2'
