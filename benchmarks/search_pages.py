"""Engine-only search of one process's memory inside a plain tar, as a whole process.

Used by the benchmark to compare the memory engine with ``grep -c -F`` over an extracted
pages file: it reads the pagemap, then streams the pages member in place (no extraction).
Prints the number of matches.

    python -m benchmarks.search_pages ARCHIVE PID PATTERN
"""

from __future__ import annotations

import sys
import tarfile
from pathlib import Path

from forensic_checkpoint.analysis.memory import (
    MemoryScanner,
    PageIndex,
    Pattern,
    SeekableRange,
    derive_page_size,
    iter_chunks,
    parse_pagemap,
)


def main(argv: list[str]) -> int:
    archive, pid, pattern = argv[0], int(argv[1]), argv[2]
    with Path(archive).open("rb") as f, tarfile.open(fileobj=f) as tf:
        pagemap_member = tf.getmember(f"checkpoint/pagemap-{pid}.img")
        pm = parse_pagemap(tf.extractfile(pagemap_member).read())  # type: ignore[union-attr]
        pages = tf.getmember(f"checkpoint/pages-{pm.pages_id}.img")
        index = PageIndex.build(pm, derive_page_size(pages.size, pm))
        scanner = MemoryScanner(index, [Pattern.literal(pattern)], pid=pid, max_hits=0)
        for chunk in iter_chunks(SeekableRange(f, pages.offset_data, pages.size), index, 8 << 20):
            scanner.feed(chunk)
        scanner.finish()
    print(scanner.counts[0])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
