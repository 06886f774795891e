"""The findings corpus: real workloads and attacks captured on the real node with their ground
truth (``make corpus``), scored by ``benchmarks/findings_corpus.py`` (``make bench-findings``)."""
