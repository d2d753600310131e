"""Calibration of the calls on a labelled set (`virnucpro calibrate`), and its use by the report.

A chunk is called virus when its margin, max P(virus) - max P(others) over its frames, is at least
a threshold (the published rule: 0); a sequence when the share of its scored chunks called virus
is at least another (published: 0.5). On a labelled set (every chunk takes its sequence's label)
the calibration counts true and false positives of the chunk calls at every margin threshold
from -1 to 1 in steps of 0.01, and of the sequence calls at every share from 0 to 1 in steps of
0.01 for each of those chunk thresholds. For a target false discovery rate (FDR) it chooses the
lowest chunk threshold whose FDR, at the upper end of its one-sided 95% confidence interval
(Wilson), is at most the target, then likewise the share for the sequences. So the thresholds
hold on new data from the same source, not only on the set they were chosen on.

The estimated FDR of a call is the lowest FDR the labelled set showed for any threshold that still
makes it (a q-value): calls with an estimated FDR at most the target are those the chosen
thresholds make, give or take the confidence margin.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from virnucpro.errors import InputError
from virnucpro.files.json_files import MAX_COUNT, check_keys, is_count, is_number, parse_json
from virnucpro.method.calls import PUBLISHED_CHUNK_THRESHOLD, margin_calls

log = logging.getLogger("virnucpro")

CHUNK_THRESHOLDS = np.round(np.linspace(-1.0, 1.0, 201), 2)  # on the chunk margin
SEQUENCE_THRESHOLDS = np.round(np.linspace(0.0, 1.0, 101), 2)  # on the share of viral chunks
PUBLISHED_CHUNK_ROW = int(np.flatnonzero(CHUNK_THRESHOLDS == PUBLISHED_CHUNK_THRESHOLD)[0])
FORMAT = "virnucpro-calibration"
FORMAT_VERSION = 1
LABELS = {"virus": True, "others": False}
_Z95 = 1.6448536269514722  # one-sided 95% normal quantile
TABLE_COLUMNS = (
    "level",
    "chunk_margin_threshold",
    "threshold",
    "calls",
    "true_positives",
    "false_positives",
    "precision",
    "recall",
    "fdr",
    "fdr_upper95",
    "chosen",
)


@dataclass
class LabelledChunks:
    """Scored chunks of a labelled set: each chunk's margin and best P(virus), and its sequence."""

    sequence: np.ndarray  # int64: position in `truth`
    margin: np.ndarray  # float32
    max_virus: np.ndarray  # float32
    truth: np.ndarray  # bool per sequence: labelled virus


def read_labels(path: str | Path) -> dict[str, bool]:
    """A TSV with a header `sequence_id<TAB>label` and a label `virus` or `others` per line, both
    labels present (an FDR needs both classes). A byte-order mark (spreadsheets write one) is
    skipped."""
    path = Path(path)
    labels: dict[str, bool] = {}
    number = 1
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = next(reader, None)
            if header is None or [h.strip() for h in header[:2]] != ["sequence_id", "label"]:
                raise InputError(f"{path}: line 1 must be the header `sequence_id<TAB>label`")
            for number, row in enumerate(reader, start=2):
                if not row or not "".join(row).strip():
                    continue
                if len(row) < 2 or row[1].strip() not in LABELS:
                    raise InputError(
                        f"{path}: line {number}: the label must be virus or others ({row!r:.200})"
                    )
                seq_id, label = row[0].strip(), LABELS[row[1].strip()]
                if labels.get(seq_id, label) != label:
                    raise InputError(f"{path}: line {number}: {seq_id} is labelled both virus and others")
                labels[seq_id] = label
    except OSError as err:
        raise InputError(f"{path}: cannot read the labels ({err.strerror})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file (binary or non-UTF-8 content)") from None
    except csv.Error as err:
        raise InputError(f"{path}: line {number + 1}: not a labels line ({err})") from None
    if not labels:
        raise InputError(f"{path}: no labelled sequence")
    for name, value in LABELS.items():
        if value not in labels.values():
            raise InputError(
                f"{path}: no sequence is labelled {name}; an FDR needs labelled sequences of both classes "
                "(virus and others)"
            )
    return labels


def distinct_files(paths: Sequence[Path], option: str) -> None:
    """Refuse a file given twice (under any name: ./x and x, a link, a hard link)."""
    seen: dict[tuple[int, int], Path] = {}
    for path in paths:
        try:
            status = Path(path).stat()
        except OSError as err:
            raise InputError(f"{path}: cannot read {option} ({err.strerror})") from None
        earlier = seen.setdefault((status.st_dev, status.st_ino), path)
        if earlier is not path:
            raise InputError(
                f"{path}: given twice to {option} (as {earlier} too); each file counts once, give it once"
            )


def _refuse_repeated_ids(ids: list[pa.ChunkedArray | pa.Array], paths: Sequence[Path], what: str) -> None:
    """Refuse an id (of a chunk, or of a frame) that appears twice among the files: it would count
    twice in the calibration."""
    table = pa.table(
        {
            "id": pa.chunked_array(
                [c for column in ids for c in getattr(column, "chunks", [column])], pa.string()
            ),
            "file": pa.array(np.repeat(np.arange(len(ids)), [len(column) for column in ids]), pa.int64()),
        }
    )
    counts = table.group_by("id", use_threads=False).aggregate(
        [("file", "count"), ("file", "min"), ("file", "max")]
    )
    repeated = counts.filter(pc.greater(counts.column("file_count"), 1))
    if repeated.num_rows:
        first = repeated.slice(0, 1).to_pylist()[0]
        where = (
            f"twice in {paths[first['file_min']]}"
            if first["file_min"] == first["file_max"]
            else f"in {paths[first['file_min']]} and in {paths[first['file_max']]}"
        )
        raise InputError(
            f"{first['id']}: this {what} is given {where} ({repeated.num_rows} {what}s given more than "
            "once); each counts once in a calibration: give each file once"
        )


def chunks_from_tables(paths: Sequence[Path], labels: dict[str, bool]) -> LabelledChunks:
    """The scored chunks of report `chunks.tsv` files."""
    distinct_files(paths, "--chunks")
    ids, chunk_ids, others, virus = [], [], [], []
    for path in paths:
        try:
            table = pacsv.read_csv(
                path,
                parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False, escape_char=False),
                convert_options=pacsv.ConvertOptions(
                    column_types={
                        "sequence_id": pa.string(),
                        "chunk_id": pa.string(),
                        "max_score_others": pa.float32(),
                        "max_score_virus": pa.float32(),
                    },
                    include_columns=["sequence_id", "chunk_id", "max_score_others", "max_score_virus"],
                ),
            )
        except OSError as err:
            raise InputError(f"{path}: cannot read ({err})") from None
        except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError) as err:
            raise InputError(f"{path}: not a chunks.tsv written by `virnucpro report` ({err})") from None
        scored = table.filter(pc.is_valid(table.column("max_score_virus")))
        chunk_ids.append(table.column("chunk_id"))
        ids.append(scored.column("sequence_id"))
        others.append(scored.column("max_score_others").to_numpy())
        virus.append(scored.column("max_score_virus").to_numpy())
    _refuse_repeated_ids(chunk_ids, paths, "chunk")
    return _labelled(pa.chunked_array([c for i in ids for c in i.chunks], pa.string()), others, virus, labels)


def chunks_from_scores(paths: Sequence[Path], labels: dict[str, bool]) -> LabelledChunks:
    """The chunks of score files, each chunk's frames reduced to its best scores (ids
    `{sequence}_chunk_{k}{frame}`, as prepare names them)."""
    from virnucpro.files.score_files import read_scores

    if not paths:
        raise InputError("calibrate: no score file given")
    distinct_files(paths, "--scores")
    tables = []
    for path in paths:
        try:
            scores = read_scores(path)
        except (OSError, ValueError, KeyError, pa.ArrowException) as err:
            raise InputError(f"{path}: not a readable scores file ({err})") from None
        tables.append(
            pa.table(
                {
                    "frame": pa.array(scores.ids, pa.string()),
                    "others": scores.score_others,
                    "virus": scores.score_virus,
                }
            )
        )
    _refuse_repeated_ids([table.column("frame") for table in tables], paths, "frame")
    frames = pa.concat_tables(tables)
    frames = frames.append_column("chunk", pc.utf8_slice_codeunits(frames.column("frame"), 0, -2))
    chunks = frames.group_by("chunk", use_threads=False).aggregate([("others", "max"), ("virus", "max")])
    sequence_ids = pc.replace_substring_regex(
        chunks.column("chunk"), pattern="_chunk_[0-9]+$", replacement=""
    )
    return _labelled(
        sequence_ids,
        [chunks.column("others_max").to_numpy()],
        [chunks.column("virus_max").to_numpy()],
        labels,
    )


def provenance_of_tables(paths: Sequence[Path]) -> dict:
    """Chunk size and classifier of the runs behind report chunks.tsv files (the run.json beside
    each): every table needs one, and all must agree."""
    from virnucpro.files.json_files import read_json_object

    sources = []
    for path in paths:
        record = Path(path).parent / "run.json"
        if not record.is_file():
            raise InputError(
                f"{path}: no run.json beside it, so the chunk size and classifier of these chunks are "
                "unknown; give the chunks.tsv of a finished `virnucpro run` or `report` folder"
            )
        run = read_json_object(record)
        parameters, models = run.get("parameters"), run.get("models")
        sources.append(
            _source(
                path,
                parameters.get("chunk_size") if isinstance(parameters, dict) else None,
                models.get("classifier") if isinstance(models, dict) else None,
                models.get("classifier_sha256") if isinstance(models, dict) else None,
                record,
            )
        )
    return _common_provenance(sources, "--chunks")


def provenance_of_scores(paths: Sequence[Path]) -> dict:
    """The chunk size and classifier behind score files (their metadata, as predict writes it)."""
    from virnucpro.files.embedding_files import read_metadata

    sources = []
    for path in paths:
        try:
            metadata = read_metadata(path)
        except (OSError, ValueError, pa.ArrowException) as err:
            raise InputError(f"{path}: not a readable scores file ({err})") from None
        size = metadata.get("classifier_chunk_size")
        sources.append(
            _source(
                path,
                int(size) if size is not None and size.isdecimal() and len(size) < 6 else size,
                metadata.get("classifier"),
                metadata.get("classifier_sha256"),
                f"{path} (its metadata)",
                hint="its classifier does not say which chunk size it was trained on; calibrate from the "
                "chunks.tsv of `virnucpro run` or `report` (their run.json records it)",
            )
        )
    return _common_provenance(sources, "--scores")


def _source(path, chunk_size, classifier, classifier_sha256, where, hint: str = "") -> dict:
    """One source's provenance, each value checked (one line naming what is missing or wrong)."""
    from virnucpro.defaults import CHUNK_SIZES
    from virnucpro.files.json_files import SHA256, is_count

    if not (is_count(chunk_size) and chunk_size in CHUNK_SIZES):
        raise InputError(
            f"{where}: records no chunk size of 300 or 500 ({chunk_size!r:.40})"
            + (f"; {hint}" if hint and chunk_size is None else "")
        )
    if not isinstance(classifier_sha256, str) or not SHA256.match(classifier_sha256):
        raise InputError(
            f"{where}: records no classifier_sha256 (the classifier's identity): {classifier_sha256!r:.80}"
        )
    if not isinstance(classifier, str):
        raise InputError(f"{where}: records no classifier name ({classifier!r:.80})")
    return {
        "file": str(path),
        "chunk_size": chunk_size,
        "classifier": classifier,
        "classifier_sha256": classifier_sha256,
    }


def _common_provenance(sources: list[dict], option: str) -> dict:
    """The chunk size and classifier all sources share (one line naming the first that differs)."""
    first = sources[0]
    for source in sources[1:]:
        for key in ("chunk_size", "classifier_sha256"):
            if source[key] != first[key]:
                raise InputError(
                    f"{source['file']}: made with another {key} ({source[key]}) than {first['file']} "
                    f"({first[key]}); give {option} files of one chunk size and classifier"
                )
    return {
        "chunk_size": first["chunk_size"],
        "classifier": first["classifier"],
        "classifier_sha256": first["classifier_sha256"],
        "sources": sources,
    }


def _labelled(sequence_ids, others: list[np.ndarray], virus: list[np.ndarray], labels) -> LabelledChunks:
    others = np.concatenate([np.empty(0, np.float32), *others]).astype(np.float32)
    virus = np.concatenate([np.empty(0, np.float32), *virus]).astype(np.float32)
    unique, sequence = np.unique(np.asarray(sequence_ids.to_pylist(), dtype=object), return_inverse=True)
    known = np.array([seq_id in labels for seq_id in unique.tolist()], dtype=bool)
    if not known.any():
        raise InputError("calibrate: none of the scored sequences has a label in --labels")
    if not known.all():
        log.warning(
            "calibrate: %d of %d scored sequences have no label and are left out", (~known).sum(), known.size
        )
    missing = len(set(labels) - set(unique.tolist()))
    if missing:
        log.warning("calibrate: %d labelled sequences have no scored chunk", missing)
    renumber = np.cumsum(known) - 1
    kept = known[sequence]
    classes = {labels[seq_id] for seq_id in unique[known].tolist()}
    if len(classes) < 2:
        raise InputError(
            f"calibrate: every scored, labelled sequence is labelled {'virus' if True in classes else 'others'}; "
            "an FDR needs scored sequences of both classes (virus and others)"
        )
    return LabelledChunks(
        sequence=renumber[sequence[kept]],
        margin=(virus - others)[kept],
        max_virus=virus[kept],
        truth=np.array([labels[s] for s in unique[known].tolist()], dtype=bool),
    )


@dataclass
class Calibration:
    """True and false positives of the chunk calls at each CHUNK_THRESHOLDS margin, and of the
    sequence calls at each SEQUENCE_THRESHOLDS share for each chunk threshold."""

    chunk_true: np.ndarray  # (201,)
    chunk_false: np.ndarray  # (201,)
    chunk_positives: int
    sequence_true: np.ndarray  # (201, 101)
    sequence_false: np.ndarray  # (201, 101)
    sequence_positives: int
    target_fdr: float
    provenance: dict  # chunk size, classifier, the labelled set's counts

    def chunk_index(self, target_fdr: float) -> int | None:
        """Position in CHUNK_THRESHOLDS of the lowest threshold meeting the target, or None."""
        return _lowest_meeting(self.chunk_true, self.chunk_false, target_fdr)

    def sequence_index(self, chunk_index: int, target_fdr: float) -> int | None:
        return _lowest_meeting(self.sequence_true[chunk_index], self.sequence_false[chunk_index], target_fdr)

    def thresholds(self, target_fdr: float, source: str) -> tuple[int, int]:
        """(chunk index, sequence index) for the target; a clear error when none meets it."""
        chunk = self.chunk_index(target_fdr)
        if chunk is None:
            best = false_discovery_rate(self.chunk_true, self.chunk_false)
            raise InputError(
                f"{source}: no chunk threshold reaches an FDR of {target_fdr} on the calibration set "
                f"(lowest: {np.nanmin(best, initial=1.0):.4f}); give a larger --target-fdr"
            )
        sequence = self.sequence_index(chunk, target_fdr)
        if sequence is None:
            raise InputError(
                f"{source}: no share of viral chunks reaches a sequence FDR of {target_fdr} on the "
                f"calibration set at chunk margin {CHUNK_THRESHOLDS[chunk]}; give a larger --target-fdr"
            )
        return chunk, sequence

    def chunk_fdr(self, margins: np.ndarray) -> np.ndarray:
        """Estimated FDR (q-value) of calls at these margins (float64; NaN below -1)."""
        return _q_values(self.chunk_true, self.chunk_false, CHUNK_THRESHOLDS, margins)

    def sequence_fdr(self, chunk_index: int, fractions: np.ndarray) -> np.ndarray:
        return _q_values(
            self.sequence_true[chunk_index], self.sequence_false[chunk_index], SEQUENCE_THRESHOLDS, fractions
        )

    def to_json(self) -> dict:
        chunk = self.chunk_index(self.target_fdr)
        sequence = None if chunk is None else self.sequence_index(chunk, self.target_fdr)
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "target_fdr": self.target_fdr,
            "chosen": {
                "chunk_margin_threshold": None if chunk is None else float(CHUNK_THRESHOLDS[chunk]),
                "min_viral_fraction": None if sequence is None else float(SEQUENCE_THRESHOLDS[sequence]),
            },
            "provenance": self.provenance,
            "chunk_thresholds": CHUNK_THRESHOLDS.tolist(),
            "sequence_thresholds": SEQUENCE_THRESHOLDS.tolist(),
            "chunk_positives": self.chunk_positives,
            "chunk_true_positives": self.chunk_true.tolist(),
            "chunk_false_positives": self.chunk_false.tolist(),
            "sequence_positives": self.sequence_positives,
            "sequence_true_positives": self.sequence_true.tolist(),
            "sequence_false_positives": self.sequence_false.tolist(),
        }

    @classmethod
    def from_json(cls, content: object, source: str) -> Calibration:
        """A calibration from the content of a calibration.json, every field checked: known keys,
        whole counts within bounds and consistent with each other, finite numbers, the provenance
        that `--calibration` is checked against."""
        where = f"{source}: not a calibration file of `virnucpro calibrate`"
        if not isinstance(content, dict):
            raise InputError(f"{where} (not a JSON object)")
        if content.get("format") != FORMAT or content.get("version") != FORMAT_VERSION:
            raise InputError(
                f"{where} (format {content.get('format')!r:.40}, version {content.get('version')!r:.20})"
            )
        check_keys(content, set(_JSON_KEYS), set(), where)
        if content["chunk_thresholds"] != CHUNK_THRESHOLDS.tolist() or (
            content["sequence_thresholds"] != SEQUENCE_THRESHOLDS.tolist()
        ):
            raise InputError(f"{where} (other thresholds than this version uses)")
        target = content["target_fdr"]
        if not is_number(target) or not 0.0 < target < 1.0:
            raise InputError(f"{where} (target_fdr {target!r:.40} is not a number between 0 and 1)")
        chunk_positives = _count(content, "chunk_positives", where)
        sequence_positives = _count(content, "sequence_positives", where)
        chunk_true = _counts(
            content, "chunk_true_positives", (CHUNK_THRESHOLDS.size,), where, chunk_positives
        )
        chunk_false = _counts(content, "chunk_false_positives", (CHUNK_THRESHOLDS.size,), where)
        shape = (CHUNK_THRESHOLDS.size, SEQUENCE_THRESHOLDS.size)
        sequence_true = _counts(content, "sequence_true_positives", shape, where, sequence_positives)
        sequence_false = _counts(content, "sequence_false_positives", shape, where)
        provenance = _checked_provenance(content["provenance"], where)
        if provenance["labelled"]["chunks_virus"] != chunk_positives or (
            provenance["labelled"]["sequences_virus"] != sequence_positives
        ):
            raise InputError(f"{where} (its positives differ from its labelled counts)")
        chosen = content["chosen"]
        if (
            not isinstance(chosen, dict)
            or set(chosen) != {"chunk_margin_threshold", "min_viral_fraction"}
            or not all(value is None or is_number(value) for value in chosen.values())
        ):
            raise InputError(f"{where} (chosen is not the two thresholds)")
        return cls(
            chunk_true=chunk_true,
            chunk_false=chunk_false,
            chunk_positives=chunk_positives,
            sequence_true=sequence_true,
            sequence_false=sequence_false,
            sequence_positives=sequence_positives,
            target_fdr=float(target),
            provenance=provenance,
        )


# The keys of calibration.json, in the order `to_json` writes them.
_JSON_KEYS = (
    "format", "version", "target_fdr", "chosen", "provenance", "chunk_thresholds", "sequence_thresholds",
    "chunk_positives", "chunk_true_positives", "chunk_false_positives", "sequence_positives",
    "sequence_true_positives", "sequence_false_positives",
)  # fmt: skip
_LABELLED_KEYS = ("sequences_virus", "sequences_others", "chunks_virus", "chunks_others")


def _count(content: dict, key: str, where: str) -> int:
    value = content[key]
    if not is_count(value):
        raise InputError(f"{where} ({key} {value!r:.40} is not a whole number from 0 to {MAX_COUNT})")
    return value


def _counts(
    content: dict, key: str, shape: tuple[int, ...], where: str, positives: int | None = None
) -> np.ndarray:
    """A table of counts of calls at rising thresholds: whole numbers, at most `positives`, never
    rising along a row (a higher threshold makes no more calls)."""
    rows = content[key] if len(shape) == 2 else [content[key]]
    if not isinstance(rows, list) or len(rows) != (shape[0] if len(shape) == 2 else 1):
        raise InputError(f"{where} ({key} is not {shape[0]} lists)")
    width = shape[-1]
    for row in rows:
        if not isinstance(row, list) or len(row) != width or not all(is_count(v) for v in row):
            raise InputError(f"{where} ({key} is not lists of {width} whole numbers from 0 to {MAX_COUNT})")
    table = np.array(rows, dtype=np.int64).reshape(shape)
    if (positives is not None and (table > positives).any()) or (np.diff(table, axis=-1) > 0).any():
        raise InputError(
            f"{where} ({key}: counts that cannot be, above the positives or rising with the threshold)"
        )
    return table


def _checked_provenance(provenance: object, where: str) -> dict:
    """The provenance of a calibration: chunk size, classifier, its sources and labelled counts."""
    if not isinstance(provenance, dict):
        raise InputError(f"{where} (provenance is not an object)")
    check_keys(
        provenance,
        {"chunk_size", "classifier", "classifier_sha256", "sources", "labelled"},
        set(),
        f"{where} (provenance)",
    )
    _source(
        "provenance",
        provenance["chunk_size"],
        provenance["classifier"],
        provenance["classifier_sha256"],
        where,
    )
    sources = provenance["sources"]
    if not isinstance(sources, list) or not sources:
        raise InputError(f"{where} (provenance: sources is not a list of the files it was made from)")
    for entry in sources:
        if not isinstance(entry, dict) or set(entry) != {
            "file",
            "chunk_size",
            "classifier",
            "classifier_sha256",
        }:
            raise InputError(
                f"{where} (provenance: a source is not file, chunk_size, classifier, classifier_sha256)"
            )
        _source(entry["file"], entry["chunk_size"], entry["classifier"], entry["classifier_sha256"], where)
        if not isinstance(entry["file"], str):
            raise InputError(f"{where} (provenance: a source's file is not a path)")
    _common_provenance(sources, "calibrate")
    if (
        sources[0]["chunk_size"] != provenance["chunk_size"]
        or sources[0]["classifier_sha256"] != provenance["classifier_sha256"]
    ):
        raise InputError(f"{where} (provenance: its sources were made with another chunk size or classifier)")
    labelled = provenance["labelled"]
    if not isinstance(labelled, dict):
        raise InputError(f"{where} (provenance: labelled is not an object)")
    check_keys(labelled, set(_LABELLED_KEYS), set(), f"{where} (provenance: labelled)")
    for key in _LABELLED_KEYS:
        if not is_count(labelled[key]):
            raise InputError(f"{where} (provenance: labelled {key} is not a whole number)")
    return provenance


def load_calibration(path: str | Path) -> tuple[Calibration, str]:
    """The calibration in a `calibration.json`, and the SHA-256 of the file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise InputError(f"{path}: cannot read --calibration ({err.strerror})") from None
    content = parse_json(raw, path, "--calibration")
    return Calibration.from_json(content, str(path)), hashlib.sha256(raw).hexdigest()


def check_target(target_fdr: float) -> None:
    if not 0.0 < target_fdr < 1.0:
        raise InputError(f"--target-fdr must be between 0 and 1 (exclusive), not {target_fdr}")


def calibrate(chunks: LabelledChunks, target_fdr: float, provenance: dict | None = None) -> Calibration:
    """Count the calls of the labelled chunks and sequences at every threshold."""
    check_target(target_fdr)
    truth_of_chunk = chunks.truth[chunks.sequence]
    chunk_true = _at_least(chunks.margin[truth_of_chunk], CHUNK_THRESHOLDS)
    chunk_false = _at_least(chunks.margin[~truth_of_chunk], CHUNK_THRESHOLDS)
    n_sequences = chunks.truth.size
    scored = np.bincount(chunks.sequence, minlength=n_sequences)
    has_chunks = scored > 0
    sequence_true = np.empty((CHUNK_THRESHOLDS.size, SEQUENCE_THRESHOLDS.size), dtype=np.int64)
    sequence_false = np.empty_like(sequence_true)
    for k, threshold in enumerate(CHUNK_THRESHOLDS):
        viral = np.bincount(chunks.sequence[margin_calls(chunks.margin, threshold)], minlength=n_sequences)
        fraction = viral[has_chunks] / scored[has_chunks]
        truth = chunks.truth[has_chunks]
        sequence_true[k] = _at_least(fraction[truth], SEQUENCE_THRESHOLDS)
        sequence_false[k] = _at_least(fraction[~truth], SEQUENCE_THRESHOLDS)
    counts = {
        "sequences_virus": int((chunks.truth & has_chunks).sum()),
        "sequences_others": int((~chunks.truth & has_chunks).sum()),
        "chunks_virus": int(truth_of_chunk.sum()),
        "chunks_others": int((~truth_of_chunk).sum()),
    }
    return Calibration(
        chunk_true=chunk_true,
        chunk_false=chunk_false,
        chunk_positives=counts["chunks_virus"],
        sequence_true=sequence_true,
        sequence_false=sequence_false,
        sequence_positives=counts["sequences_virus"],
        target_fdr=target_fdr,
        provenance={**(provenance or {}), "labelled": counts},
    )


def _at_least(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many values are >= each threshold, compared in the values' type (float32 margins as
    margin_calls compares them; float64 shares as the sequence call compares them)."""
    ordered = np.sort(values)
    return (ordered.size - np.searchsorted(ordered, thresholds.astype(ordered.dtype), side="left")).astype(
        np.int64
    )


def false_discovery_rate(true: np.ndarray, false: np.ndarray) -> np.ndarray:
    calls = true + false
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(calls > 0, false / calls, np.nan)


def fdr_upper(true: np.ndarray, false: np.ndarray) -> np.ndarray:
    """One-sided 95% upper confidence bound (Wilson score) of the FDR; NaN without calls."""
    calls = (true + false).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = false / calls
        z2 = _Z95**2
        centre = p + z2 / (2 * calls)
        spread = _Z95 * np.sqrt(p * (1 - p) / calls + z2 / (4 * calls**2))
        return np.where(calls > 0, (centre + spread) / (1 + z2 / calls), np.nan)


def _lowest_meeting(true: np.ndarray, false: np.ndarray, target: float) -> int | None:
    meets = np.flatnonzero(fdr_upper(true, false) <= target)  # NaN (no calls) never meets
    return int(meets[0]) if meets.size else None


def _q_values(true, false, thresholds, values) -> np.ndarray:
    """For each value, the lowest FDR over the thresholds at or below it (NaN below the first)."""
    fdr = false_discovery_rate(true, false)
    running = np.fmin.accumulate(fdr)
    values = np.asarray(values)
    position = np.searchsorted(thresholds.astype(values.dtype), values, side="right") - 1
    return np.where(position >= 0, running[np.maximum(position, 0)], np.nan)


def table_rows(calibration: Calibration) -> list[tuple]:
    """calibration.tsv: every chunk threshold, then every share at the chosen chunk threshold (the
    published 0 when none meets the target); `chosen` marks the thresholds chosen for the target."""
    chosen_chunk = calibration.chunk_index(calibration.target_fdr)
    chunk = PUBLISHED_CHUNK_ROW if chosen_chunk is None else chosen_chunk
    chosen_sequence = (
        None if chosen_chunk is None else calibration.sequence_index(chunk, calibration.target_fdr)
    )
    rows = _level_rows(
        "chunk", CHUNK_THRESHOLDS, CHUNK_THRESHOLDS, calibration.chunk_true, calibration.chunk_false,
        calibration.chunk_positives, chosen_chunk,
    )  # fmt: skip
    rows += _level_rows(
        "sequence",
        np.full(SEQUENCE_THRESHOLDS.size, CHUNK_THRESHOLDS[chunk]),
        SEQUENCE_THRESHOLDS,
        calibration.sequence_true[chunk],
        calibration.sequence_false[chunk],
        calibration.sequence_positives,
        chosen_sequence,
    )
    return rows


def _level_rows(level, chunk_thresholds, thresholds, true, false, positives, chosen) -> list[tuple]:
    calls = true + false
    fdr, upper = false_discovery_rate(true, false), fdr_upper(true, false)
    rows = []
    for i in range(thresholds.size):
        rows.append(
            (
                level,
                f"{chunk_thresholds[i]:.2f}",
                f"{thresholds[i]:.2f}",
                int(calls[i]),
                int(true[i]),
                int(false[i]),
                "" if not calls[i] else f"{1 - fdr[i]:.4f}",
                "" if not positives else f"{true[i] / positives:.4f}",
                "" if not calls[i] else f"{fdr[i]:.4f}",
                "" if not calls[i] else f"{upper[i]:.4f}",
                "yes" if i == chosen else "",
            )
        )
    return rows
