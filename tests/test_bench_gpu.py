"""The device check's smoke run: `bench/gpu.py --smoke` runs the GPU script's code on CPU with tiny
shapes and writes the JSON the device run writes (CI runs this; the figures are not asserted)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from conftest import REPO, cli_env

ROW_FIELDS = {
    "model",
    "precision",
    "path",
    "tokens_per_s",
    "seqs_per_s",
    "mfu",
    "peak_memory_bytes",
    "attention_kernel",
}


@pytest.mark.slow
def test_smoke_run_writes_every_field(tmp_path):
    out = tmp_path / "smoke.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu.py"), "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(out.read_text())
    rows = {(r["model"], r["precision"]): r for r in data["rows"]}
    for model in ("dnabert-s", "esm2"):
        for precision in ("fp32", "bf16"):
            row = rows[(model, precision)]
            assert set(row) >= ROW_FIELDS
            assert row["mfu"] is None  # meaningless on a CPU
            assert row["tokens_per_s"] > 0 and row["seqs_per_s"] > 0 and row["peak_memory_bytes"] > 0
            assert row["attention_kernel"]
        assert data["original_loop_ratio"][model] > 0
        bf16 = next(a for a in data["agreement"] if a["model"] == model and a["precision"] == "bf16")
        assert isinstance(bf16["min_cosine"], float) and 0.99 <= bf16["min_cosine"] <= 1.0 + 1e-9
        assert 0.0 <= bf16["label_agreement"] <= 1.0
    (e2e,) = data["end_to_end"]
    assert e2e["precision"] == "bf16" and e2e["frames"] > 0 and math.isfinite(e2e["seconds"])
