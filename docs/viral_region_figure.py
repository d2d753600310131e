"""Draws docs/viral_region.png, the README's picture of a viral region: synthetic chunk scores for a
host contig with a prophage-like stretch, a phage contig and a plain host contig, run through the
real prepare and report; the picture is the report's own sequence_tracks.png.

    python docs/viral_region_figure.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "python"), str(ROOT / "tests" / "helpers")]

from synthetic import scripted_sample  # noqa: E402  (the tests' scripted samples)
from virnucpro.stages.report import report  # noqa: E402


def main() -> None:
    rng = np.random.default_rng(12)
    host = rng.beta(1, 14, 60)  # host chunks: P(virus) mostly below 0.1
    host[22:42] = rng.beta(14, 1.5, 20)  # a prophage-like stretch, chunks 23-42 ...
    host[30] = 0.2  # ... with one chunk that does not look viral (bridged)
    host[8] = 0.85  # a lone viral-looking chunk: not a region
    script = {
        "host_contig_with_prophage": host.round(4).tolist(),
        "phage_contig": rng.beta(12, 1.5, 14).round(4).tolist(),
        "host_contig": rng.beta(1, 14, 40).round(4).tolist(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        fasta, prepared, scores = scripted_sample(Path(tmp) / "sample", script, shard_size=1000)
        report(fasta, prepared, scores, Path(tmp) / "out", quiet=True)
        shutil.copy(Path(tmp) / "out" / "sequence_tracks.png", ROOT / "docs" / "viral_region.png")
        print((Path(tmp) / "out" / "viral_regions.tsv").read_text(), end="")


if __name__ == "__main__":
    main()
