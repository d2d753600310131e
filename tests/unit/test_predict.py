"""`virnucpro predict`: join by id, DNABERT-S then ESM-2, eval-mode scores, provenance, resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import run_cli
from synthetic import DNABERT_DIM, ESM_DIM, prepared_example, random_classifier, write_random_embeddings
from virnucpro.errors import InputError
from virnucpro.files.embedding_files import read_embeddings, read_metadata, write_embeddings
from virnucpro.files.layout import OUTDIR_MARKER
from virnucpro.files.score_files import read_scores
from virnucpro.method.classifier import MLPClassifier, score_features
from virnucpro.stages.predict import predict_files


@pytest.fixture
def shards(tmp_path, example_fasta):
    prepared = prepared_example(example_fasta, tmp_path / "prepared")
    embeddings = write_random_embeddings(prepared, tmp_path / "embeddings")
    model = random_classifier(tmp_path / "classifier")
    return tmp_path, embeddings, model


def expected_scores(model, dnabert_path, esm_path):
    dnabert, esm = read_embeddings(dnabert_path), read_embeddings(esm_path)
    row = {frame_id: i for i, frame_id in enumerate(esm.ids)}
    esm_vectors = np.stack([esm.vectors[row[i]] for i in dnabert.ids])
    features = torch.from_numpy(np.concatenate([dnabert.vectors, esm_vectors], axis=1))
    with torch.no_grad():
        return dnabert.ids, torch.softmax(model.eval()(features), dim=1).numpy()


def test_scores_join_by_id_in_dnabert_order(shards):
    tmp_path, embeddings, model = shards
    outputs = predict_files(embeddings, tmp_path / "classifier", tmp_path / "scores", quiet=True)
    assert [p.name for p in outputs] == [f"shard_0000{i}.scores.parquet" for i in range(1, 6)]
    total = 0
    for out, dnabert_path, esm_path in zip(outputs, embeddings[::2], embeddings[1::2], strict=True):
        table = read_scores(out)
        ids, probabilities = expected_scores(model, dnabert_path, esm_path)
        assert table.ids == ids
        assert table.score_others.dtype == np.float32 and table.score_virus.dtype == np.float32
        np.testing.assert_allclose(table.score_others, probabilities[:, 0], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(table.score_virus, probabilities[:, 1], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(table.score_others + table.score_virus, 1.0, rtol=1e-6)
        # Provenance: the classifier and both embedding files' own metadata.
        assert table.metadata["classifier"] == str(tmp_path / "classifier")
        assert len(table.metadata["classifier_sha256"]) == 64
        assert (
            table.metadata["dnabert.model"] == "random-dnabert"
            and table.metadata["esm.model"] == "random-esm"
        )
        assert table.metadata["dnabert.dim"] == str(DNABERT_DIM) and table.metadata["esm.dim"] == str(ESM_DIM)
        total += len(table.ids)
    assert total == 30
    all_virus = np.concatenate([read_scores(p).score_virus for p in outputs])
    assert (all_virus > 0.5).any() and (all_virus < 0.5).any()


def test_feature_order_is_dnabert_then_esm(shards):
    """Swapping the two halves changes the scores: the order is part of the contract."""
    tmp_path, embeddings, model = shards
    out = predict_files(embeddings[:2], tmp_path / "classifier", tmp_path / "scores", quiet=True)[0]
    dnabert, esm = read_embeddings(embeddings[0]), read_embeddings(embeddings[1])
    row = {frame_id: i for i, frame_id in enumerate(esm.ids)}
    esm_vectors = np.stack([esm.vectors[row[i]] for i in dnabert.ids])
    swapped = np.concatenate(
        [esm_vectors[:, :DNABERT_DIM], dnabert.vectors, esm_vectors[:, DNABERT_DIM:]], axis=1
    )
    with torch.no_grad():
        wrong = torch.softmax(model(torch.from_numpy(swapped)), dim=1).numpy()
    assert not np.allclose(read_scores(out).score_virus, wrong[:, 1], atol=1e-4)


def test_missing_and_duplicate_ids_are_named(shards):
    tmp_path, embeddings, _ = shards
    esm = read_embeddings(embeddings[1])
    write_embeddings(embeddings[1], esm.ids[1:], esm.vectors[1:], esm.metadata)
    with pytest.raises(InputError, match=f"missing: {esm.ids[0]}"):
        predict_files(embeddings[:2], tmp_path / "classifier", tmp_path / "scores", quiet=True)
    ids = [*esm.ids[:-1], esm.ids[0]]
    write_embeddings(embeddings[1], ids, esm.vectors, esm.metadata)
    with pytest.raises(InputError, match=f"duplicate ids {esm.ids[0]}"):
        predict_files(embeddings[:2], tmp_path / "classifier", tmp_path / "scores", quiet=True)
    dnabert = read_embeddings(embeddings[0])
    write_embeddings(
        embeddings[1], [*esm.ids, "intruder_chunk_1F1"], np.vstack([esm.vectors, esm.vectors[:1]]), {}
    )
    write_embeddings(embeddings[0], dnabert.ids, dnabert.vectors, dnabert.metadata)
    with pytest.raises(InputError, match="missing: intruder_chunk_1F1"):
        predict_files(embeddings[:2], tmp_path / "classifier", tmp_path / "scores", quiet=True)


def test_unpaired_file_and_wrong_widths_are_refused(shards):
    tmp_path, embeddings, _ = shards
    with pytest.raises(InputError, match=r"shard_00001: no shard_00001\.esm\.parquet"):
        predict_files(embeddings[:1], tmp_path / "classifier", tmp_path / "scores", quiet=True)
    random_classifier(tmp_path / "wide", dnabert_dim=DNABERT_DIM, esm_dim=ESM_DIM + 1)
    with pytest.raises(InputError, match=r"= 64 values, but the classifier .* takes 65"):
        predict_files(embeddings[:2], tmp_path / "wide", tmp_path / "scores", quiet=True)


def test_complete_scores_are_kept_and_stale_ones_recomputed(shards):
    tmp_path, embeddings, _ = shards
    first = predict_files(embeddings, tmp_path / "classifier", tmp_path / "scores", quiet=True)
    stamps = [p.stat().st_mtime_ns for p in first]
    old_sha = read_metadata(first[0])["classifier_sha256"]
    again = predict_files(embeddings, tmp_path / "classifier", tmp_path / "scores", quiet=True)
    assert [p.stat().st_mtime_ns for p in again] == stamps
    # Another classifier: every scores file is stale and is recomputed with the new provenance.
    random_classifier(tmp_path / "classifier", seed=5)
    changed = predict_files(embeddings, tmp_path / "classifier", tmp_path / "scores", quiet=True)
    assert all(p.stat().st_mtime_ns != s for p, s in zip(changed, stamps, strict=True))
    assert read_metadata(changed[0])["classifier_sha256"] != old_sha


def test_predict_cli(shards):
    tmp_path, embeddings, _ = shards
    result = run_cli(
        "predict", *embeddings, "--classifier", tmp_path / "classifier", "--outdir", tmp_path / "cli"
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == [
        OUTDIR_MARKER,
        *(f"shard_0000{i}.scores.parquet" for i in range(1, 6)),
    ]
    bad = run_cli(
        "predict",
        tmp_path / "prepared" / "chunk_frames.tsv",
        "--classifier",
        tmp_path / "classifier",
        "--outdir",
        tmp_path / "x",
    )
    assert bad.returncode == 2
    assert (
        bad.stderr.strip()
        == f"virnucpro: error: {tmp_path / 'prepared' / 'chunk_frames.tsv'}: not an embedding file "
        "(expected shard_NNNNN.dnabert.parquet or shard_NNNNN.esm.parquet)"
    )


def test_a_rows_score_does_not_depend_on_the_rows_scored_with_it():
    """Shard size decides which rows share a forward pass; the scores must not move with it."""
    torch.manual_seed(0)
    model = MLPClassifier(3328, 512).eval()
    features = np.random.default_rng(0).normal(size=(300, 3328)).astype(np.float32)
    whole = score_features(model, features)
    for rows, total in ((1, 20), (7, 300), (100, 300)):
        parts = [score_features(model, features[i : i + rows]) for i in range(0, total, rows)]
        whole_part = (whole[0][:total], whole[1][:total])
        for column in (0, 1):
            np.testing.assert_array_equal(np.concatenate([p[column] for p in parts]), whole_part[column])


def test_scores_do_not_depend_on_the_number_of_torch_threads():
    """Torch's CPU matmul gives other last digits with other thread counts; scores are computed with
    a fixed one, so a run on 2 or 64 cores, in a worker or in predict, writes the same bytes."""
    torch.manual_seed(1)
    model = MLPClassifier(3328, 512).eval()
    features = np.random.default_rng(1).normal(size=(700, 3328)).astype(np.float32)
    previous = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 4, 8):
            torch.set_num_threads(threads)
            results.append(score_features(model, features))
            assert torch.get_num_threads() == threads  # restored after scoring
    finally:
        torch.set_num_threads(previous)
    for others, virus in results[1:]:
        assert others.tobytes() == results[0][0].tobytes() and virus.tobytes() == results[0][1].tobytes()
