"""Process memory of CRIU checkpoints: pagemap decoding, page index, streaming search, RSS.

The engine is right where the peer tools are wrong (see docs/benchmarks.md):

* CRIU >= 4.2 pagemaps keep ``nr_pages`` in field 5; older ones only in field 2. Both are read.
* Only ``PE_PRESENT`` entries have bytes in ``pages-<id>.img``; ``PE_PARENT`` / ``PE_LAZY`` entries
  are holes that are reported as unavailable and never advance the pages-file offset.
* The page size is derived from the pages file size, not assumed.
* Matches are found across page, chunk and pagemap-entry boundaries when the virtual memory is
  contiguous, and never across a gap in virtual addresses.

Typical use by the analyzer (one pass over a streamed archive)::

    pagemap = parse_pagemap(pagemap_img_bytes)
    index = PageIndex.build(pagemap, page_size=derive_page_size(pages_size, pagemap))
    scanner = MemoryScanner(index, [Pattern.literal(b"secret")], pid=6, vmas=vmas_from_mm(mm))
    for chunk in pages_member_chunks:
        hits.extend(scanner.feed(chunk))
    hits.extend(scanner.finish())

or, with a seekable source, ``search(source, index, patterns, pid=..., vmas=...)`` and
``ProcessMemory.from_file(index, f, offset)`` for random reads (argv / environment strings).
"""

from forensic_checkpoint.analysis.memory.index import (
    Hole,
    PageIndex,
    PresentRun,
    derive_page_size,
)
from forensic_checkpoint.analysis.memory.pagemap import (
    PE_LAZY,
    PE_PARENT,
    PE_PRESENT,
    Pagemap,
    PagemapEntry,
    parse_pagemap,
)
from forensic_checkpoint.analysis.memory.process import MemoryUnavailableError, ProcessMemory
from forensic_checkpoint.analysis.memory.rss import VmaRss, rss_by_vma
from forensic_checkpoint.analysis.memory.scanner import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_REGEX_MAX_LENGTH,
    MemoryHit,
    MemoryScanner,
    Pattern,
)
from forensic_checkpoint.analysis.memory.sources import (
    PagesSource,
    SeekableRange,
    iter_chunks,
    search,
)
from forensic_checkpoint.analysis.memory.vmas import (
    Vma,
    VmaLike,
    normalize_vmas,
    shmem_vaddrs,
    vmas_from_mm,
)

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_REGEX_MAX_LENGTH",
    "PE_LAZY",
    "PE_PARENT",
    "PE_PRESENT",
    "Hole",
    "MemoryHit",
    "MemoryScanner",
    "MemoryUnavailableError",
    "PageIndex",
    "Pagemap",
    "PagemapEntry",
    "PagesSource",
    "Pattern",
    "PresentRun",
    "ProcessMemory",
    "SeekableRange",
    "Vma",
    "VmaLike",
    "VmaRss",
    "derive_page_size",
    "iter_chunks",
    "normalize_vmas",
    "parse_pagemap",
    "rss_by_vma",
    "search",
    "shmem_vaddrs",
    "vmas_from_mm",
]
