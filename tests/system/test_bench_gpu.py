"""The device check's smoke run: `bench/gpu.py --smoke` runs the GPU script's code on CPU with tiny
shapes, in a Python without Biopython (as on the GPU machine), and writes the JSON the device run
writes, after every step (the figures are not asserted)."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO
from without_biopython import env_without_biopython

ROW_FIELDS = {
    "model",
    "precision",
    "path",
    "tokens_per_s",
    "seqs_per_s",
    "mfu",
    "peak_memory_bytes",
    "attention_kernel",
    "first_call_s",
}


def cpu_runs_fp8() -> bool:
    """Whether this torch's `_scaled_mm` takes row-wise scales on the CPU (2.11's does not)."""
    import torch

    from virnucpro.embedding.fp8 import Fp8Linear

    try:
        Fp8Linear(torch.nn.Linear(16, 16))(torch.ones(2, 16))
    except RuntimeError:
        return False
    return True


def smoke(tmp_path, *args) -> list[str]:
    return [
        sys.executable,
        str(REPO / "bench" / "gpu.py"),
        "--smoke",
        "--json",
        str(tmp_path / "smoke.json"),
        *args,
    ]


@pytest.mark.slow
def test_smoke_run_writes_every_field_without_biopython(tmp_path):
    # Step 8 (compiled kernels) takes minutes of CPU compilation; `make test-gpu-replica` runs it.
    env = {
        **env_without_biopython(tmp_path / "blocker"),
        "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"),
    }
    result = subprocess.run(
        smoke(tmp_path, "--steps", "1-7,9"), capture_output=True, text=True, env=env, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((tmp_path / "smoke.json").read_text())
    assert [s["step"] for s in data["steps"]] == [1, 2, 3, 4, 5, 6, 7, 9]
    assert {s["status"] for s in data["steps"]} == {"ok"}, data["steps"]
    rows = {(r["model"], r["precision"], r["path"]): r for r in data["rows"]}
    measured = [
        ("dnabert-s", "bf16", "default"),
        ("esm2", "bf16", "default"),
        ("esm2", "bf16-cast", "default"),
    ]
    fp8 = ("esm2", "fp8", "fused-qkv")
    if cpu_runs_fp8():
        measured.append(fp8)
        assert rows[fp8]["attention_kernel"] == "sdpa (fused QKV, fp8 compiled quantize)"
    else:
        assert not any(r["precision"] == "fp8" for r in data["rows"])
        assert "fp8: needs a Hopper GPU, or on a CPU a torch with row-wise" in result.stdout
    for key in measured:
        row = rows[key]
        assert set(row) >= ROW_FIELDS
        assert row["mfu"] is None  # meaningless on a CPU
        assert row["tokens_per_s"] > 0 and row["seqs_per_s"] > 0 and row["peak_memory_bytes"] > 0
    for model in ("dnabert-s", "esm2"):
        assert data["original_loop_ratio"][model] > 0
        bf16 = next(a for a in data["agreement"] if a["model"] == model and a["precision"] == "bf16")
        assert isinstance(bf16["min_cosine"], float) and 0.99 <= bf16["min_cosine"] <= 1.0 + 1e-9
        assert 0.0 <= bf16["label_agreement"] <= 1.0
    (e2e,) = data["end_to_end"]
    assert e2e["precision"] == "bf16" and e2e["frames"] > 0 and math.isfinite(e2e["seconds"])
    assert len(e2e["model_load_s"]) == 2  # both models' load times, read off the workers' log lines
    assert data["defaults"]["dnabert_attention"] == "sdpa"
    assert set(data["choices"]) >= {"bf16 flavour", "fp8 implementation", "ESM-2 kernel (bf16)"}


@pytest.mark.slow
def test_a_run_killed_after_its_first_step_has_written_it(tmp_path):
    """The JSON is replaced after every step (written whole, then renamed), so a kill -9 right after
    the first measured row leaves that row readable."""
    out = tmp_path / "smoke.json"
    process = subprocess.Popen(
        smoke(tmp_path, "--steps", "1-2"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env_without_biopython(tmp_path / "blocker"),
    )
    data: dict = {}
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:
            if out.exists():
                data = json.loads(out.read_text())  # never half a file
                if data["rows"]:
                    break
            time.sleep(0.005)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert data.get("rows"), "no row was written before the run ended"
    after = json.loads(out.read_text())
    assert after["rows"][0]["model"] == "dnabert-s" and after["rows"][0]["tokens_per_s"] > 0
