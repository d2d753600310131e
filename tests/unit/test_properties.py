"""Property-based tests of every parser of a user's file: random and mutated FASTA/FASTQ, labels,
samplesheets (the pipeline's own reader), calibration.json, --run-info and the config.json of model
folders give a result or a one-line `InputError` (for samplesheets: the pipeline's own error),
never any other exception; and what they accept can be used (a model config builds its model,
a calibration gives thresholds). Hypothesis runs with a fixed seed (derandomize) and a bounded
number of examples, so the suite is deterministic."""

from __future__ import annotations

import gzip
import json
import shutil
import string
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from conftest import REPO
from nextflow_support import nextflow_env, run_nextflow
from synthetic import write_calibration_json
from virnucpro.errors import InputError

SETTINGS = settings(
    max_examples=200,
    derandomize=True,
    database=None,  # no examples saved by an earlier run: every run tries the same ones
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def accepted(parse, *args):
    """What `parse` returns, or None when it refused with an InputError (any other exception fails)."""
    try:
        return parse(*args)
    except InputError as err:
        assert "\n" not in str(err).strip(), str(err)
        return None


# --- Mutations of a valid file ---


@st.composite
def mutated(draw, base: bytes) -> bytes:
    """`base` with a few random edits: bytes inserted, deleted or replaced, lines doubled or cut,
    a byte-order mark, or the whole of it gzip-compressed (and perhaps truncated)."""
    data = bytearray(base)
    for _ in range(draw(st.integers(0, 4))):
        edit = draw(st.sampled_from(["insert", "delete", "replace", "double", "cut", "bom"]))
        at = draw(st.integers(0, len(data)))
        if edit == "insert":
            data[at:at] = draw(
                st.binary(min_size=1, max_size=12)
                | st.sampled_from([b"\t", b"\r\n", b"\x00", b">", b"@", b"+", b","])
            )
        elif edit == "delete":
            del data[at : at + draw(st.integers(1, 20))]
        elif edit == "replace" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif edit == "double":
            end = data.find(b"\n", at)
            data[at:at] = data[at : end + 1 if end >= 0 else len(data)]
        elif edit == "cut":
            del data[at:]
        elif edit == "bom":
            data[0:0] = b"\xef\xbb\xbf"
    if draw(st.booleans()) and draw(st.integers(0, 9)) == 0:
        packed = gzip.compress(bytes(data), mtime=0)
        data = bytearray(packed[: draw(st.integers(1, len(packed)))] if draw(st.booleans()) else packed)
    return bytes(data)


def files_of(base: bytes):
    return st.one_of(st.binary(max_size=400), mutated(base))


# --- FASTA / FASTQ ---

FASTA = b">seq_1 a description\nACGTACGTNNacgt\nACGU\n>seq_2\nRYKMSWBDHVN\n\n>seq_3\n\n"
FASTQ = b"@read_1 x\nACGTACGT\n+\nIIIIIIII\n@read_2\nNNNN\n+read_2\n!!!!\n"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("properties")


@SETTINGS
@given(data=st.one_of(files_of(FASTA), files_of(FASTQ)))
@example(data=b">a\n" + b"A" * 10 + b"\n>a\nACGT\n")
@example(data=b"\xef\xbb\xbf>a\nACGT\n")
def test_sequence_files_are_read_or_refused(scratch, data):
    from virnucpro.files.sequences import read_sequences

    path = scratch / "reads.fa"
    path.write_bytes(data)
    records = accepted(lambda: list(read_sequences(path)))
    if records is not None:
        assert all(record.id and not record.id[0].isspace() for record in records)


# --- labels ---

LABELS = b"sequence_id\tlabel\nseq_1\tvirus\nseq_2\tothers\n seq_3 \t virus \n"


@SETTINGS
@given(data=files_of(LABELS))
@example(data=b"\xef\xbb\xbfsequence_id\tlabel\r\na\tvirus\r\nb\tothers\r\n")
@example(data=b"sequence_id\tlabel\na\tvirus\n" + b"x" * 200_000 + b"\tothers\n")  # over csv's field limit
@example(data=b"sequence_id\tlabel\na\tvirus\nb\x00\tothers\n")
def test_labels_are_read_or_refused(scratch, data):
    from virnucpro.method.calibration import read_labels

    path = scratch / "labels.tsv"
    path.write_bytes(data)
    labels = accepted(read_labels, path)
    if labels is not None:
        assert set(labels.values()) == {True, False}


# --- JSON files: calibration.json, --run-info, config.json ---

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.sampled_from([0, 1, -1, 2**31, 2**53 + 1, 10**400])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def leaves(value, path=()) -> list[tuple]:
    """The path (keys and indices) of every value inside `value` that is not a non-empty container."""
    children = (
        value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    )
    found = [path] if not children or not value else []
    for key, child in children:
        found += leaves(child, (*path, key))
    return found


# Numbers that break what reads them carelessly: beyond int64 and float, infinite, not a number,
# a boolean where a count is expected, a fraction where a whole number is.
HOSTILE_NUMBERS = st.sampled_from(
    [-1, 2**63, 10**30, 10**400, float("inf"), float("-inf"), float("nan"), 1e308, 0.5, -0.0, True]
)


@st.composite
def edited_json(draw, base: dict) -> bytes:
    """`base` with values replaced by random JSON values (any leaf, deep inside a table of counts
    as often as at the top), keys removed or added, written as Python writes JSON (NaN and Infinity
    included), then perhaps mutated as bytes."""
    content = json.loads(json.dumps(base))
    every_leaf = leaves(content)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(every_leaf) | st.sampled_from([(key,) for key in content]))
        try:  # an earlier edit may have replaced a container on the path
            parent = content
            for key in path[:-1]:
                parent = parent[key]
            if isinstance(parent, dict) and draw(st.integers(0, 4)) == 0:
                del parent[path[-1]]
                parent["unknown_key"] = draw(JSON_VALUES)
            else:
                parent[path[-1]] = draw(HOSTILE_NUMBERS | JSON_VALUES)
        except (KeyError, IndexError, TypeError):
            continue
    text = json.dumps(content).encode()
    return draw(mutated(text)) if draw(st.integers(0, 3)) == 0 else text


@pytest.fixture(scope="module")
def calibration_content(scratch) -> dict:
    return json.loads(write_calibration_json(scratch / "calibration").read_text())


@SETTINGS
@given(data=st.data())
def test_calibration_files_are_read_or_refused(scratch, calibration_content, data):
    from virnucpro.method.calibration import load_calibration, table_rows

    path = scratch / "calibration.json"
    path.write_bytes(data.draw(edited_json(calibration_content) | st.binary(max_size=200)))
    loaded = accepted(load_calibration, path)
    if loaded is not None:  # usable: thresholds, estimated FDRs, its table
        calibration, _ = loaded
        accepted(calibration.thresholds, 0.05, "test")
        assert calibration.chunk_fdr(np.array([0.0, 0.5], np.float32)).shape == (2,)
        assert len(table_rows(calibration)) == 302


@SETTINGS
@given(
    data=st.one_of(
        st.dictionaries(
            st.sampled_from(["nextflow", "timings", "versions", "workflow", "x"]), JSON_VALUES, max_size=3
        ).map(lambda d: json.dumps(d).encode()),
        st.binary(max_size=100),
    )
)
@example(data=b'{"versions": 5}')
@example(data=b"[" * 5000 + b"]" * 5000)
@example(data=b'{"timings": {"embed_s": 1e400}}')
def test_run_info_is_read_or_refused(scratch, data):
    from virnucpro.stages.report import _merge, read_run_info

    path = scratch / "run_info.json"
    path.write_bytes(data)
    info = accepted(read_run_info, path)
    if info is not None:  # what report merges into run.json can be written as JSON
        json.dumps(
            _merge({"versions": {"virnucpro": "x"}, "timings": {"report_s": 1.0}}, info), allow_nan=False
        )


@pytest.fixture(scope="module")
def model_folders(test_models, scratch) -> dict[str, tuple[Path, dict]]:
    folders = {}
    for kind in ("dnabert-s", "esm2", "classifier"):
        folder = scratch / kind
        shutil.copytree(test_models / kind, folder)
        folders[kind] = (folder, json.loads((folder / "config.json").read_text()))
    return folders


@SETTINGS
@given(data=st.data(), kind=st.sampled_from(["dnabert-s", "esm2", "classifier"]))
def test_model_configs_are_read_or_refused(model_folders, data, kind):
    """An accepted config builds its model (on the meta device: no memory is spent)."""
    from virnucpro.method import classifier
    from virnucpro.models import dnabert_s, esm2

    folder, base = model_folders[kind]
    (folder / "config.json").write_bytes(data.draw(edited_json(base)))
    if kind == "dnabert-s":
        config = accepted(dnabert_s.DnabertConfig.from_file, folder / "config.json")
        build = lambda: dnabert_s.DnabertModel(config)  # noqa: E731
    elif kind == "esm2":
        from transformers import EsmModel

        config = accepted(esm2.esm_config, folder)
        build = lambda: EsmModel(config, add_pooling_layer=False)  # noqa: E731
    else:
        config = accepted(classifier.read_config, folder / "config.json")
        build = lambda: classifier.MLPClassifier(config.input_dim, config.hidden_dim, config.num_classes)  # noqa: E731
    if config is not None:
        with torch.device("meta"):
            build()


# --- samplesheets: the pipeline's reader, many sheets in one Nextflow run ---

SHEET = b"sample,file\nfirst,a.fa\nfirst,b.fa\nsecond,sub/c.fa\n"
SHEET_TEXT = st.text(alphabet=string.ascii_letters[:6] + ",./_- \t\r\n\ufeff\u00e9", max_size=60)


@pytest.mark.nextflow
@settings(
    max_examples=3, derandomize=True, database=None, deadline=None, phases=[Phase.explicit, Phase.generate]
)
@given(sheets=st.lists(st.one_of(files_of(SHEET), SHEET_TEXT.map(str.encode)), min_size=60, max_size=60))
def test_samplesheets_are_read_or_refused(tmp_path_factory, sheets):
    """Every generated sheet is read (`ok`) or refused with the pipeline's one-line error
    (WorkflowScriptErrorException), in one Nextflow run for all of them; not shrunk (each try is
    a Nextflow start)."""
    folder = tmp_path_factory.mktemp("sheets")
    (folder / "sub").mkdir()
    for name in ("a.fa", "b.fa", "sub/c.fa"):
        (folder / name).write_text(">x\nACGT\n")
    paths = []
    for number, content in enumerate(sheets):
        paths.append(folder / f"sheet_{number}.csv")
        paths[-1].write_bytes(content)
    (folder / "sheets.txt").write_text("".join(f"{path}\n" for path in paths))
    result = run_nextflow(
        "run", REPO / "tests" / "nextflow" / "samplesheets.nf", "--sheets", folder / "sheets.txt",
        "--results", folder / "results.txt", cwd=folder, env=nextflow_env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    lines = (folder / "results.txt").read_text().splitlines()
    assert len(lines) == len(sheets)
    for path, line in zip(paths, lines, strict=True):
        outcome = line.split("\t", 1)[0]
        assert outcome in ("ok", "nextflow.exception.WorkflowScriptErrorException"), (path.read_bytes(), line)
