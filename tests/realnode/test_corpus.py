"""The findings corpus on the real node: scenarios from the corpus table run, captured through a
ForensicCheckpoint, and the analyzer's findings scored against the ground truth read from /proc
before the capture (docs/findings-corpus.md).

A slice of benign workloads and attacks runs on every submission; the whole corpus runs in
``make test-slow``. Each test fails when its archive misses the goals of issue 16: nothing above
``low`` on a benign workload, every expected finding (rule, pid, path or remote) on an attack,
and ``Suspicious`` exactly on the attacks.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from benchmarks.findings_corpus import analyze
from tests.realnode.support import NAMESPACE, RealNodeEnv

from forensic_checkpoint_dev.corpus import runner, scenarios, scoring


@pytest.fixture(scope="module")
def corpus(real_env: RealNodeEnv) -> Iterator[runner.CorpusRun]:
    # tcp-established: the agent writes its CRIU config (reverse shells, held clients)
    real_env.start_agent(values={"criuConfig": {"enabled": True}})
    run = runner.CorpusRun(real_env.cluster, real_env.stack, runner.corpus_image(), NAMESPACE)
    run.prepare()
    try:
        yield run
    finally:
        real_env.start_agent(values={"criuConfig": {"enabled": False}})  # removes its file
        real_env.start_agent()


def _goals(corpus: runner.CorpusRun, name: str, directory: Path) -> list[str]:
    (scenario,) = scenarios.by_name([name])
    truth = corpus.capture(scenario, directory)
    score = scoring.score_archive(truth, analyze(directory / f"{name}.tar"))
    print(scoring.render([score]))
    return score.goal_failures()


@pytest.mark.parametrize("name", scenarios.SLICE)
def test_corpus_slice_meets_the_goals(corpus: runner.CorpusRun, name: str, tmp_path: Path) -> None:
    assert _goals(corpus, name, tmp_path) == []


@pytest.mark.slow
@pytest.mark.timing
@pytest.mark.parametrize(
    "name", [s.name for s in scenarios.SCENARIOS if s.name not in scenarios.SLICE]
)
def test_whole_corpus_meets_the_goals(corpus: runner.CorpusRun, name: str, tmp_path: Path) -> None:
    assert _goals(corpus, name, tmp_path) == []
