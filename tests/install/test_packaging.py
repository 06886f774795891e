"""What a user gets from the sdist and the wheel: their contents, and a clean venv with only the
base wheel analysing a committed sample completely, without pycriu and without the cluster
libraries (issue 18, "The analyzer anywhere")."""

from __future__ import annotations

import json
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from forensic_checkpoint_dev.packaging import Dists, build_dists, clean_install

from .chart import REPO

pytestmark = pytest.mark.slow  # builds the sdist and wheel, and pip-installs a venv

SAMPLE = REPO / "tests" / "data" / "counter-blog.tar.zst"
TRUTH = json.loads((REPO / "tests" / "data" / "counter-blog.truth.json").read_text())
SECRET = TRUTH["memory_strings"][0]  # in memory twice
PROTO_DIR = REPO / "third_party" / "criu" / "images"
PROTOS = sorted(p.stem.replace("-", "_") for p in PROTO_DIR.glob("*.proto"))
GENERATED = sorted(f"{name}_pb2.py" for name in PROTOS if name != "opts")
CLUSTER_LIBRARIES = ("kopf", "kubernetes", "aiohttp", "boto3", "prometheus_client", "requests")


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    work = tmp_path_factory.mktemp("dists")
    return build_dists(work / "dist", work / "build-tools")


def test_the_wheel_holds_the_licenses_and_the_generated_criu_modules(dists: Dists) -> None:
    names = zipfile.ZipFile(dists.wheel).namelist()
    info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
    assert f"{info}/licenses/LICENSE" in names
    assert f"{info}/licenses/third_party/criu/LICENSE" in names
    proto_dir = "forensic_checkpoint/analysis/format/criu_proto/"
    shipped = sorted(n.removeprefix(proto_dir) for n in names if n.startswith(proto_dir))
    assert shipped == sorted(["__init__.py", "field_options.json", *GENERATED])
    assert not [n for n in names if n.startswith(("tests/", "dev/", "benchmarks/", "tools/"))]
    assert not [n for n in names if "forensic_checkpoint_dev" in n or "hatch_build" in n]
    metadata = zipfile.ZipFile(dists.wheel).read(f"{info}/METADATA").decode()
    assert "License-Expression: Apache-2.0" in metadata
    assert "Project-URL: Source, " in metadata
    assert "Classifier: Operating System :: MacOS" in metadata
    base = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert not [line for line in base if "extra ==" not in line and "kopf" in line]
    assert any("boto3" in line and "extra == 'export'" in line for line in base)


def test_the_sdist_holds_the_protos_and_the_generator_not_the_generated_code(
    dists: Dists,
) -> None:
    with tarfile.open(dists.sdist) as tar:
        names = [n.split("/", 1)[1] for n in tar.getnames() if "/" in n]
    for needed in ("LICENSE", "SECURITY.md", "CHANGELOG.md", "README.md", "hatch_build.py"):
        assert needed in names
    assert "tools/criu_protos.py" in names
    assert "third_party/criu/LICENSE" in names and "third_party/criu/README.md" in names
    assert {f"{p}.proto" for p in ("core", "pstree", "mm")} <= {
        n.rsplit("/", 1)[-1] for n in names if n.startswith("third_party/criu/images/")
    }
    assert not [n for n in names if n.endswith("_pb2.py")]
    assert not [n for n in names if n.startswith(("tests/", "dev/", "benchmarks/", ".venv"))]


def _run(python: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python.parent / "forensic-checkpoint"), *argv],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_clean_venv_with_the_base_wheel_analyses_a_sample_completely(
    dists: Dists, tmp_path: Path
) -> None:
    python = clean_install(tmp_path / "venv", dists.wheel)
    probe = subprocess.run(
        [str(python), "-I", "-c", "import importlib.util as u, sys; print(*[m for m in sys.argv[1:]"
         " if u.find_spec(m)])", "pycriu", *CLUSTER_LIBRARIES],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert probe.stdout.split() == [], "the base install has no pycriu and no cluster library"

    analysis = _run(python, "analyze", str(SAMPLE), "-o", "json", "--reveal",
                    "--search", SECRET["value"])  # fmt: skip
    assert analysis.returncode == 0, analysis.stderr
    report = json.loads(analysis.stdout)
    assert report["warnings"] == []
    assert sorted(p["pid"] for p in report["processes"]) == sorted(
        p["pid"] for p in TRUTH["processes"]
    )
    (found,) = report["memory"]["searches"]
    assert {(m["pid"], m["address"]) for m in found["matches"]} == {
        (o["pid"], o["vaddr"]) for o in SECRET["occurrence_list"]
    }

    search = _run(python, "search", str(SAMPLE), SECRET["value"])
    assert search.returncode == 0, search.stderr
    assert f"'{SECRET['value']}': 2 matches" in search.stdout

    decoded = _run(python, "show-file", str(SAMPLE), "checkpoint/pstree.img", "--decode")
    assert decoded.returncode == 0 and json.loads(decoded.stdout)["magic"] == "PSTREE"

    operator = _run(python, "operator")
    assert operator.returncode == 1
    assert "needs the 'operator' extra" in operator.stderr
    assert "Traceback" not in operator.stderr
