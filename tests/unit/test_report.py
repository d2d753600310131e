"""`virnucpro report`: the original's two files in its exact layout, the added tables, viral.fa,
the HTML page and PNGs (deterministic bytes) and run.json, from synthetic scores."""

from __future__ import annotations

import csv
import json
import re
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import OUTPUTS, cli_env, golden_or_skip, run_cli
from synthetic import prepared_example, random_classifier, scripted_sample, write_random_embeddings
from virnucpro.errors import InputError
from virnucpro.files.layout import CHUNK_FRAMES_TSV, OUTDIR_MARKER
from virnucpro.files.score_files import read_scores, write_scores
from virnucpro.files.sequences import read_sequences
from virnucpro.method.calls import CALLS
from virnucpro.report.data import first_in_lexsort
from virnucpro.report.tables import CHUNK_COLUMNS, SEQUENCE_COLUMNS, float32_text, suffixed_order
from virnucpro.stages.predict import predict_files
from virnucpro.stages.report import ReportOptions, report

FLOAT32_TEXT = r"\d\.\d+(e-\d\d)?|0\.0|1\.0"


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """The example prepared for real, random embeddings, a random classifier, real scores files."""
    from conftest import DATA

    tmp_path = tmp_path_factory.mktemp("scored")
    prepared = prepared_example(DATA / "example.fa", tmp_path / "prepared")
    embeddings = write_random_embeddings(prepared, tmp_path / "embeddings")
    random_classifier(tmp_path / "classifier")
    scores = predict_files(embeddings, tmp_path / "classifier", tmp_path / "scores", quiet=True)
    return DATA / "example.fa", prepared, scores


@pytest.fixture(scope="module")
def reported(scored, tmp_path_factory):
    example, prepared, scores = scored
    outdir = tmp_path_factory.mktemp("report")
    result = run_cli(
        "report", "--input", example, "--prepared", prepared, "--scores", *scores, "--outdir", outdir
    )
    assert result.returncode == 0, result.stderr
    return outdir


def read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def test_every_output_is_written(reported):
    assert sorted(p.name for p in reported.iterdir()) == sorted([*OUTPUTS, OUTDIR_MARKER])


def test_prediction_results_layout_and_values(scored, reported):
    _, prepared, scores = scored
    lines = (reported / "prediction_results.txt").read_text().split("\n")
    assert lines[0] == "Sequence_ID\tPrediction\tscore1\tscore2" and lines[-1] == ""
    rows = [line.split("\t") for line in lines[1:-1]]
    # One row per kept frame, in input order (chunk_frames.tsv order, frames F1..R3 within a chunk).
    expected_ids = [
        c["chunk_id"] + f
        for c in read_tsv(prepared / CHUNK_FRAMES_TSV)
        for f in filter(None, c["frames"].split(","))
    ]
    assert [r[0] for r in rows] == expected_ids and len(rows) == 30
    score = {}
    for path in scores:
        table = read_scores(path)
        score.update(zip(table.ids, zip(table.score_others, table.score_virus, strict=True), strict=True))
    for frame_id, prediction, score1, score2 in rows:
        assert re.fullmatch(FLOAT32_TEXT, score1) and re.fullmatch(FLOAT32_TEXT, score2)
        others, virus = score[frame_id]
        assert (score1, score2) == (str(others), str(virus))  # numpy's float32 text, exactly
        assert np.float32(score1) == others and np.float32(score2) == virus  # and it round-trips
        assert prediction == ("virus" if virus > others else "others")
    assert {r[1] for r in rows} == {"virus", "others"}


def test_consensus_recomputed_from_prediction_results(reported):
    """The original's consensus, recomputed the way its pandas code did it from the text file."""
    groups = defaultdict(list)
    for row in read_tsv(reported / "prediction_results.txt"):
        groups[row["Sequence_ID"][:-2]].append((float(row["score1"]), float(row["score2"])))
    expected = [(k, max(s[1] for s in v) >= max(s[0] for s in v)) for k, v in sorted(groups.items())]
    lines = (reported / "prediction_results_highestscore.csv").read_text().splitlines()
    assert lines[0] == "Modified_ID\tIs_Virus"
    assert lines[1:] == [f"{k}\t{v}" for k, v in expected]
    assert {line.split("\t")[1] for line in lines[1:]} == {"True", "False"}


def test_layout_matches_the_original_files():
    """Our writers reproduce the golden files byte for byte from their own values."""
    golden = golden_or_skip()
    for path in sorted(golden.glob("*_prediction_results.txt")):
        text = path.read_text()
        for line in text.splitlines()[1:]:
            _, _, score1, score2 = line.split("\t")
            assert float32_text(np.float32(score1)) == score1 and float32_text(np.float32(score2)) == score2
        highest = path.with_name(path.name.replace(".txt", "_highestscore.csv")).read_text()
        assert highest.splitlines()[0] == "Modified_ID\tIs_Virus"
        assert text.splitlines()[0] == "Sequence_ID\tPrediction\tscore1\tscore2"


def test_report_reproduces_golden_files_from_their_scores(tmp_path):
    """Scores taken from the original's output give back its two files byte for byte."""
    golden = golden_or_skip()
    for results in sorted(golden.glob("*_prediction_results.txt")):
        stem = results.name.removesuffix("_prediction_results.txt")
        prepared = tmp_path / stem / "prepared"
        prepared_example(golden / f"{stem}.fa", prepared, shard_size=10_000)
        rows = [line.split("\t") for line in results.read_text().splitlines()[1:]]
        write_scores(
            tmp_path / stem / "shard_00001.scores.parquet",
            [r[0] for r in rows],
            np.array([np.float32(r[2]) for r in rows]),
            np.array([np.float32(r[3]) for r in rows]),
            {},
        )
        outdir = tmp_path / stem / "out"
        report(
            golden / f"{stem}.fa",
            prepared,
            [tmp_path / stem / "shard_00001.scores.parquet"],
            outdir,
            quiet=True,
        )
        assert (outdir / "prediction_results.txt").read_bytes() == results.read_bytes()
        highest = golden / f"{stem}_prediction_results_highestscore.csv"
        assert (outdir / "prediction_results_highestscore.csv").read_bytes() == highest.read_bytes()


def test_chunks_tsv_has_every_chunk(scored, reported):
    _, prepared, _ = scored
    prepared_chunks = read_tsv(prepared / CHUNK_FRAMES_TSV)
    with open(reported / "chunks.tsv") as handle:
        assert tuple(handle.readline().rstrip("\n").split("\t")) == CHUNK_COLUMNS
    chunks = read_tsv(reported / "chunks.tsv")
    assert len(chunks) == len(prepared_chunks) == 53
    predictions = defaultdict(list)
    for row in read_tsv(reported / "prediction_results.txt"):
        predictions[row["Sequence_ID"][:-2]].append(row)
    for chunk, original in zip(chunks, prepared_chunks, strict=True):
        assert {k: chunk[k] for k in original} == original
        frames = predictions.get(chunk["chunk_id"], [])
        if not frames:
            assert chunk["n_frames"] == "0" and chunk["call"] == "unscored"
            assert chunk["reason"] == "no stop-free frame" and chunk["max_score_virus"] == ""
            continue
        best_virus = max(frames, key=lambda r: float(r["score2"]))
        assert chunk["max_score_virus"] == best_virus["score2"]
        assert chunk["max_score_others"] == max((r["score1"] for r in frames), key=float)
        assert chunk["best_frame"] == best_virus["Sequence_ID"][-2:]
        viral = float(chunk["max_score_virus"]) >= float(chunk["max_score_others"])
        assert chunk["call"] == ("virus" if viral else "others") and chunk["reason"] == ""
    assert sum(c["call"] == "unscored" for c in chunks) == 23


def test_sequences_tsv_and_viral_fasta(example_fasta, reported):
    with open(reported / "sequences.tsv") as handle:
        assert tuple(handle.readline().rstrip("\n").split("\t")) == SEQUENCE_COLUMNS
    sequences = read_tsv(reported / "sequences.tsv")
    records = list(read_sequences(example_fasta))
    assert [s["sequence_id"] for s in sequences] == [r.id for r in records]
    chunks = defaultdict(list)
    for chunk in read_tsv(reported / "chunks.tsv"):
        chunks[chunk["sequence_id"]].append(chunk)
    for sequence, record in zip(sequences, records, strict=True):
        mine = chunks[record.id]
        scored = [c for c in mine if c["call"] != "unscored"]
        viral = [c for c in scored if c["call"] == "virus"]
        assert int(sequence["length"]) == len(record.sequence) and int(sequence["n_chunks"]) == len(mine)
        assert int(sequence["chunks_scored"]) == len(scored) and int(sequence["viral_chunks"]) == len(viral)
        if not scored:
            assert sequence["call"] == "unscored" and sequence["viral_fraction"] == ""
            continue
        assert sequence["call"] == ("virus" if len(viral) / len(scored) >= 0.5 else "others")
        assert float(sequence["viral_fraction"]) == pytest.approx(len(viral) / len(scored), abs=5e-5)
        assert sequence["max_score_virus"] == max((c["max_score_virus"] for c in scored), key=float)
    calls = {s["sequence_id"]: s["call"] for s in sequences}
    assert {"virus", "others", "unscored"} <= set(calls.values())
    assert calls["empty_11"] == "unscored"
    expected = "".join(f">{r.header}\n{r.sequence}\n" for r in records if calls[r.id] == "virus")
    assert (reported / "viral.fa").read_text() == expected


def test_min_viral_fraction_changes_sequence_calls(scored, tmp_path):
    example, prepared, scores = scored
    strict = report(
        example, prepared, scores, tmp_path / "strict", ReportOptions(min_viral_fraction=1.0), quiet=True
    )
    lenient = report(
        example, prepared, scores, tmp_path / "lenient", ReportOptions(min_viral_fraction=0.0), quiet=True
    )
    calls = [CALLS[c] for c in strict.sequences.call]
    assert calls == [
        "unscored" if not scored else "virus" if viral == scored else "others"
        for scored, viral in zip(strict.sequences.chunks_scored, strict.sequences.viral_chunks, strict=True)
    ]
    lenient_calls = lenient.sequences.call[lenient.sequences.chunks_scored > 0]
    assert lenient_calls.size and all(CALLS[c] == "virus" for c in lenient_calls)
    assert strict.counts()["sequences_virus"] < lenient.counts()["sequences_virus"]
    with pytest.raises(InputError, match="between 0 and 1"):
        report(example, prepared, scores, tmp_path / "bad", ReportOptions(min_viral_fraction=1.5), quiet=True)


def png_chunks(data: bytes) -> list[bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    names, position = [], 8
    while position < len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        name = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        assert zlib.crc32(name + body) == int.from_bytes(
            data[position + 8 + length : position + 12 + length], "big"
        )
        names.append(name)
        position += 12 + length
    return names


def test_report_is_byte_identical_across_runs_and_deterministic(scored, reported, tmp_path):
    example, prepared, scores = scored
    result = run_cli(
        "report",
        "--input",
        example,
        "--prepared",
        prepared,
        "--scores",
        *scores,
        "--outdir",
        tmp_path / "again",
    )
    assert result.returncode == 0, result.stderr
    for name in OUTPUTS:
        first, second = (reported / name).read_bytes(), (tmp_path / "again" / name).read_bytes()
        if name == "run.json":
            first_json, second_json = json.loads(first), json.loads(second)
            first_json.pop("timings"), second_json.pop("timings")
            assert first_json == second_json
        else:
            assert first == second, name
    for name in ("score_histogram.png", "sequence_tracks.png"):
        chunks = png_chunks((reported / name).read_bytes())
        assert b"tEXt" not in chunks and b"tIME" not in chunks and b"iTXt" not in chunks
        assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND"


def test_report_html_is_self_contained(reported):
    page = (reported / "report.html").read_text()
    assert '<section id="summary">' in page
    images = re.findall(r'<img src="([^"]+)"', page)
    assert len(images) == 2 and all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r'(src|href)="(https?:|//)', page)
    for src, name in zip(images, ("score_histogram.png", "sequence_tracks.png"), strict=True):
        import base64

        assert base64.b64decode(src.split(",", 1)[1]) == (reported / name).read_bytes()


def test_run_json(scored, tmp_path):
    example, prepared, scores = scored
    info = tmp_path / "info.json"
    info.write_text(json.dumps({"workflow": {"name": "nf"}, "timings": {"embed_s": 1.5}}))
    result = run_cli(
        "report", "--input", example, "--prepared", prepared, "--scores", scores[0], "--scores", *scores[1:],
        "--outdir", tmp_path / "out", "--run-info", info,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["workflow"] == {"name": "nf"}
    assert run["timings"]["embed_s"] == 1.5 and run["timings"]["report_s"] >= 0
    assert run["parameters"] == {
        "chunk_size": 500, "min_viral_fraction": 0.5, "region_max_gap": 1, "region_min_chunks": 2,
        "confidence_high": 0.9, "confidence_medium": 0.7, "target_fdr": 0.05, "calibration": None,
    }  # fmt: skip
    assert run["calls"]["rule"] == "published" and run["calls"]["chunk_margin_threshold"] == 0.0
    assert run["counts"]["chunks"] == 53 and run["counts"]["frames"] == 30
    assert run["models"]["dnabert.model"] == "random-dnabert" and "classifier_sha256" in run["models"]
    assert run["versions"]["virnucpro"]


def test_report_errors_name_the_problem(scored, tmp_path):
    example, prepared, scores = scored
    # A missing shard leaves frames without a score: named.
    with pytest.raises(InputError, match="frames without a score"):
        report(example, prepared, scores[1:], tmp_path / "a", quiet=True)
    # Another input than the prepared one.
    other = tmp_path / "other.fa"
    other.write_text(">x\nACGT\n")
    with pytest.raises(InputError, match="not the input the prepare folder was made from"):
        report(other, prepared, scores, tmp_path / "b", quiet=True)
    result = run_cli(
        "report", "--input", example, "--prepared", tmp_path, "--scores", *scores, "--outdir", tmp_path / "c"
    )
    assert result.returncode == 2 and "not a finished prepare folder" in result.stderr
    result = run_cli("report", "--input", example, "--prepared", prepared, "--outdir", tmp_path / "d")
    assert result.returncode == 2 and "--scores" in result.stderr


def assert_same_outputs(first: Path, second: Path) -> None:
    for name in OUTPUTS:
        if name != "run.json":
            assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_renamed_score_files_are_joined_by_id(scored, reported, tmp_path):
    """Score files whose names no longer follow the shards' order give the same outputs."""
    example, prepared, scores = scored
    renamed = []
    for number, path in enumerate(reversed(scores), start=1):
        renamed.append(tmp_path / f"shard_{number:05d}.scores.parquet")
        renamed[-1].write_bytes(path.read_bytes())
    report(example, prepared, renamed, tmp_path / "out", quiet=True)
    assert_same_outputs(reported, tmp_path / "out")


def test_duplicated_and_foreign_scores_are_named(scored, tmp_path):
    example, prepared, scores = scored
    copy = tmp_path / "shard_99999.scores.parquet"
    copy.write_bytes(scores[0].read_bytes())
    with pytest.raises(InputError, match=r"shard_99999.scores.parquet: ids already scored in another file: "):
        report(example, prepared, [*scores, copy], tmp_path / "a", quiet=True)
    write_scores(
        tmp_path / "shard_00000.scores.parquet", ["elsewhere_chunk_1F1"], np.ones(1), np.zeros(1), {}
    )
    with pytest.raises(InputError, match=r"scores for frames that .* does not hold: elsewhere_chunk_1F1$"):
        report(
            example, prepared, [tmp_path / "shard_00000.scores.parquet", *scores], tmp_path / "b", quiet=True
        )
    assert not any((tmp_path / folder / name).exists() for folder in "ab" for name in OUTPUTS)


def test_chunk_table_read_in_small_blocks_gives_the_same_outputs(scored, reported, tmp_path, monkeypatch):
    """Blocks that end inside a line (97 bytes) are stitched back together."""
    import virnucpro.report.data
    import virnucpro.report.tables

    example, prepared, scores = scored
    monkeypatch.setattr(virnucpro.report.data, "_BLOCK_BYTES", 97)
    monkeypatch.setattr(virnucpro.report.data, "ROWS_PER_BATCH", 3)
    monkeypatch.setattr(virnucpro.report.tables, "ROWS_PER_BATCH", 3)
    data = report(example, prepared, scores, tmp_path / "out", quiet=True)
    assert_same_outputs(reported, tmp_path / "out")
    # One array however many blocks: a ChunkedArray's take() copies all of its text on every call.
    assert isinstance(data.sequences.ids, pa.Array) and data.sequences.ids.type == pa.string()


def test_ids_past_2_gib_of_text_give_the_same_outputs(scored, reported, tmp_path, monkeypatch):
    """Ids whose text passes what a string array holds are held as large_string (forced here by
    lowering the limit): every writer joins and sorts them as before."""
    import virnucpro.report.data

    example, prepared, scores = scored
    monkeypatch.setattr(virnucpro.report.data, "_STRING_ARRAY_BYTES", 0)
    data = report(example, prepared, scores, tmp_path / "out", quiet=True)
    assert data.sequences.ids.type == pa.large_string()
    assert_same_outputs(reported, tmp_path / "out")


@pytest.mark.parametrize(
    "names",
    [
        ["read_1", "read_10", "read_1.5", "read_2", "A", "A-1", "a", "Zz", "read_1x"],
        # An id holding `_chunk_` can interleave its chunks with another sequence's.
        ["A", "A_chunk_1", "A_chunk_", "A_chunk", "A_chunk_1_chunk_2", "B"],
    ],
)
def test_highest_score_rows_sorted_as_text_like_python(names, tmp_path):
    scripted = {name: [0.9, 0.2, None, 0.6] * 3 for name in names}  # 12 chunks: numbers 1, 10, 11, 12, 2...
    fasta, prepared, scores = scripted_sample(tmp_path / "sample", scripted)
    report(fasta, prepared, scores, tmp_path / "out", quiet=True)
    rows = [
        line.split("\t")
        for line in (tmp_path / "out/prediction_results_highestscore.csv").read_text().splitlines()
    ]
    expected = sorted(
        (f"{name}_chunk_{k}", str(score >= 0.5))
        for name, values in scripted.items()
        for k, score in enumerate(values, start=1)
        if score is not None
    )
    assert [tuple(r) for r in rows[1:]] == expected


def test_sequence_means_are_numpys_mean_exactly():
    """Per-sequence means in one reduceat equal numpy's pairwise mean after rounding to float32,
    also where the float64 mean sits on a float32 rounding boundary (summed again there)."""
    from virnucpro.method.calls import group_means

    rng = np.random.default_rng(3)
    counts = rng.integers(1, 3000, 400)
    values = (rng.random(counts.sum()) ** rng.choice([1, 8, 40], counts.sum())).astype(np.float32)
    one, above_one = np.float32(1.0), np.nextafter(np.float32(1.0), np.float32(2.0))
    tie = np.array([one, above_one], dtype=np.float32)  # mean: exactly between two float32 values
    values, counts = np.concatenate([values, tie]), np.append(counts, 2)
    means = group_means(values, counts)
    starts = np.cumsum(counts) - counts
    expected = np.array(
        [values[a : a + n].mean(dtype=np.float64) for a, n in zip(starts, counts, strict=True)]
    )
    assert np.array_equal(means.astype(np.float32), expected.astype(np.float32))
    assert means[-1] == expected[-1] == 1.0 + 2.0**-24


@given(
    st.integers(0, 80).flatmap(
        lambda size: st.tuples(
            st.lists(
                st.one_of(
                    st.lists(st.integers(-3, 3), min_size=size, max_size=size).map(np.array),
                    st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=size, max_size=size).map(np.array),
                    st.lists(st.booleans(), min_size=size, max_size=size).map(
                        lambda v: np.array(v, dtype=bool)
                    ),
                ),
                min_size=1,
                max_size=3,
            ),
            st.integers(1, 90),
        )
    )
)
@settings(max_examples=300, deadline=None)
def test_first_in_lexsort_is_the_start_of_lexsort(case):
    """The page's top rows are chosen without sorting every sequence: the same rows, in the same
    order (ties in position order), as the first `count` of a full lexsort."""
    keys, count = case
    assert np.array_equal(first_in_lexsort(keys, count), np.lexsort(keys)[:count])


@given(
    st.integers(0, 60).flatmap(
        lambda size: st.tuples(
            st.lists(st.integers(0, 3), min_size=size, max_size=size),  # scored chunks
            st.lists(st.integers(0, 3), min_size=size, max_size=size),  # of which viral
            st.lists(st.sampled_from([150, 500, 900]), min_size=size, max_size=size),
            st.lists(st.booleans(), min_size=size, max_size=size),  # where
        )
    ),
    st.integers(1, 12),
    st.integers(1, 9),
)
@settings(max_examples=300, deadline=None)
def test_top_sequences_are_the_start_of_the_ranking(columns, count, batch):
    """The page's most viral sequences, ranked a batch at a time: the same rows, in the same order,
    as the first `count` of every (chosen) sequence ranked at once, whatever the batch size."""
    from types import SimpleNamespace

    from virnucpro.report.data import SequenceTable
    from virnucpro.report.figures import ranked_sequences, top_sequences

    scored, viral, length, where = (np.array(c, dtype=np.int32) for c in columns)
    size = len(scored)
    table = SequenceTable(
        ids=pa.array([f"s{i}" for i in range(size)], pa.string()),
        record=np.arange(1, size + 1, dtype=np.int32),
        length=length,
        n_chunks=np.maximum(scored, 1),
        chunks_scored=scored,
        viral_chunks=np.minimum(viral, scored),
        max_virus=np.zeros(size, np.float32),
        mean_virus=np.zeros(size, np.float32),
        call=np.zeros(size, np.uint8),
    )
    data = SimpleNamespace(sequences=table)
    chosen = where.astype(bool)
    expected = ranked_sequences(data, np.flatnonzero(chosen))[:count]
    found = top_sequences(data, count, lambda rows: chosen[rows], batch=batch)
    assert found.tolist() == expected.tolist()
    assert (
        top_sequences(data, count, batch=batch).tolist()
        == ranked_sequences(data, np.arange(size))[:count].tolist()
    )


@given(st.lists(st.integers(0, 2**20), max_size=50), st.booleans())
def test_exclusive_cumsum_is_where_each_group_starts(counts, huge):
    """Where each sequence's chunks start, int32 while the total fits (no int64 temporaries)."""
    from virnucpro.report.data import exclusive_cumsum

    counts = np.array(counts + ([2**31] if huge else []), dtype=np.int64)
    starts = exclusive_cumsum(counts)
    assert starts.tolist() == (np.cumsum(counts) - counts).tolist()
    assert starts.dtype == (np.int64 if counts.sum() >= 2**31 else np.int32)


@given(
    st.lists(st.text(alphabet="ab_1.0é", min_size=1, max_size=6), unique=True, max_size=40),
    st.integers(1, 5),
)
@settings(max_examples=300, deadline=None)
def test_suffixed_order_sorts_as_python_with_the_suffix(ids, batch):
    """Chunk ids' prefixes are ranked without making `id + "_chunk_"` for every id: the same order
    as Python's sorted() of the suffixed ids, whatever the batch boundaries."""
    import virnucpro.report.tables as tables

    saved = tables.ROWS_PER_BATCH
    tables.ROWS_PER_BATCH = batch
    try:
        got = suffixed_order(pa.chunked_array([pa.array(ids, type=pa.string())]), "_chunk_").tolist()
    finally:
        tables.ROWS_PER_BATCH = saved
    assert got == sorted(range(len(ids)), key=lambda i: ids[i] + "_chunk_")


def test_virnucpro_report_loads_no_torch(scored, tmp_path):
    """The pipeline's REPORT task runs `virnucpro report`: its memory figures (bench/report.py)
    hold only while nothing it imports loads torch, about 500 MB of its own."""
    import subprocess
    import sys

    example, prepared, scores = scored
    argv = ["virnucpro", "report", "--input", str(example), "--prepared", str(prepared)]
    argv += ["--scores", *map(str, scores), "--outdir", str(tmp_path / "out")]
    code = (
        f"import sys; sys.argv = {argv!r}\n"
        "from virnucpro.cli import main\n"
        "try:\n    main()\nexcept SystemExit as exit_:\n    assert not exit_.code, exit_.code\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"
    assert (tmp_path / "out" / "run.json").is_file()
