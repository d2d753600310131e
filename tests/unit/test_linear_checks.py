"""Checks that run on every rerun stay linear in the number of shards: counted, not timed."""

from __future__ import annotations

import pytest

import virnucpro.files.outdir as outdir
from virnucpro.errors import InputError


def test_inputs_against_outputs_is_linear(tmp_path, monkeypatch):
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir(), outputs.mkdir()
    shards = []
    for i in range(2000):
        (inputs / f"shard_{i:05d}.fa").write_text(">a\nACGT\n")
        shards.append(inputs / f"shard_{i:05d}.fa")
    made = [outputs / f"shard_{i:05d}.scores.parquet" for i in range(2000)]
    for path in made[::2]:
        path.write_text("x")
    calls = []
    real = outdir._identity
    monkeypatch.setattr(outdir, "_identity", lambda path: calls.append(path) or real(path))
    outdir.refuse_inputs_among_outputs(shards, made)
    assert len(calls) <= len(shards) + len(made)  # every pair compared would be 2 x 4,000,000
    # And it still finds an input among, linked to, or inside the outputs.
    (outputs / "link.fa").symlink_to(made[0])
    for bad, how in ((made[10], "is"), (outputs / "link.fa", "links to"), (made[0], "is")):
        with pytest.raises(InputError, match=how):
            outdir.refuse_inputs_among_outputs([*shards[:5], bad], made)
    inside = outputs / "sub" / "reads.fa"
    inside.parent.mkdir()
    inside.write_text(">a\nACGT\n")
    with pytest.raises(InputError, match="lies inside"):
        outdir.refuse_inputs_among_outputs([inside], [outputs])
