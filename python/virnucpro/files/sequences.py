"""Reading and checking input sequences: FASTA or FASTQ, plain or gzip, recognised by content.

Records stream one at a time (memory follows the longest sequence, not the file), in one pass that
also hashes the file's bytes (the input's identity for resume), so pipes and standard input (`-`)
work too. Several files can form one sample (`SequenceInputs`): read in the given order, ids unique
across all of them. Biopython's low-level parsers do the parsing; this module adds the checks they
lack and turns every problem into one `InputError` line that names the file, the record and what
is wrong.
"""

from __future__ import annotations

import gzip
import io
import itertools
import os
import sys
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from Bio.SeqIO.FastaIO import SimpleFastaParser
from Bio.SeqIO.QualityIO import FastqGeneralIterator

from virnucpro.errors import InputError
from virnucpro.files.checksums import HashingReader
from virnucpro.files.layout import STDIN, display_name, is_stream

GZIP_MAGIC = b"\x1f\x8b"
UTF16_MARKS = (b"\xff\xfe", b"\xfe\xff")
# Other compressions and archives, recognised to say what the file is (only gzip is read).
OTHER_FORMATS = {
    b"BZh": "bzip2-compressed",
    b"\xfd7zXZ\x00": "xz-compressed",
    b"\x28\xb5\x2f\xfd": "zstd-compressed",
    b"PK\x03\x04": "a zip archive",
    b"7z\xbc\xaf\x27\x1c": "a 7-zip archive",
}
_SNIFF_BYTES = 4096  # a text file has no NUL byte here; a binary one nearly always has
# IUPAC nucleotide codes (U is RNA's T) and X, which masking tools write for N. A record with any
# other letter is not DNA; protein sequences nearly always hold one of E F I J L O P Q Z or '*'.
NUCLEOTIDE_CODES = "ACGTURYSWKMBDHVNX"
_NUCLEOTIDE_BYTES = (NUCLEOTIDE_CODES + NUCLEOTIDE_CODES.lower()).encode()
_PROTEIN_ONLY = frozenset("EFIJLOPQZefijlopqz*")
_READ_BUFFER = 1 << 20
# Ids travel through tab-separated tables read in blocks of a megabyte (a row must fit one block);
# 64 KiB is far beyond any real id and well inside that.
MAX_ID_CHARACTERS = 1 << 16


class SequenceRecord(NamedTuple):  # a tuple: millions of short reads are built quickly
    number: int  # 1-based position of the record in its file
    id: str  # first word of the header
    header: str  # the whole header line without its '>' or '@'
    sequence: str
    file: int = 1  # 1-based position of its file among the sample's files


def printable(text: str) -> str:
    """`text` as it can be shown on one line of a terminal or log (control characters escaped)."""
    return text if text.isprintable() else repr(text)[1:-1]


class _Lines:
    """A text handle for the parsers that first returns the line already read (the first header),
    then the rest of the file; iteration stays at C speed (itertools.chain)."""

    def __init__(self, first: str, rest: Iterable[str]):
        self._lines = itertools.chain((first,), rest)

    def read(self, size: int = -1) -> str:
        if size:
            raise io.UnsupportedOperation("read")
        return ""  # FastqGeneralIterator's text-mode check reads 0 characters

    def readline(self) -> str:
        return next(self._lines, "")

    def __iter__(self) -> Iterator[str]:
        return self._lines


class SequenceFile:
    """One input file (or `-`) opened for streaming; `records()` yields checked records once.

    After the records were read to the end: `format`, `compressed`, `sha256` (of the bytes as
    stored) and `records_read`. `bytes_read()` reports progress (compressed bytes for gzip).
    """

    def __init__(self, path: str | Path, file_number: int = 1):
        self.path = Path(path)
        self.name = display_name(path)
        self.file_number = file_number
        self.format = ""
        self.compressed = False
        self.sha256 = ""
        self.records_read = 0
        self._reader: HashingReader | None = None

    @property
    def size(self) -> int | None:
        """Bytes in the file, or None for a stream (its size is not known in advance)."""
        return None if is_stream(self.path) else self.path.stat().st_size

    def bytes_read(self) -> int:
        return 0 if self._reader is None else self._reader.bytes_read

    def error(self, problem: str, record: int | None = None, seq_id: str | None = None) -> InputError:
        where = self.name
        if record is not None:
            where += f": record {record}" + (f" ({printable(seq_id)})" if seq_id else "")
        return InputError(f"{where}: {problem}")

    def check(self) -> None:
        """Fail now, before any output is touched, when the file cannot be read at all."""
        if str(self.path) == STDIN:
            return
        if self.path.is_dir():
            raise self.error("is a folder, not a sequence file")
        if not self.path.exists():
            raise self.error("no such file" + (" (a broken link)" if self.path.is_symlink() else ""))
        if not os.access(self.path, os.R_OK):
            raise self.error("cannot open (permission denied)")

    def _open(self) -> HashingReader:
        self.check()
        if str(self.path) == STDIN:
            return HashingReader(open(sys.stdin.fileno(), "rb", buffering=0, closefd=False))
        try:
            return HashingReader(open(self.path, "rb", buffering=0))
        except OSError as err:
            raise self.error(f"cannot open ({err.strerror})") from None

    def records(self, seen: SeenIds | None = None) -> Iterator[SequenceRecord]:
        """Checked records in file order; `seen` (the sample's ids so far) refuses a duplicate id."""
        reader = self._reader = self._open()
        try:
            yield from self._records(reader, seen)
            self.sha256 = reader.hexdigest()
        except (EOFError, zlib.error, gzip.BadGzipFile) as err:
            raise self.error(f"truncated or corrupt gzip data ({err})") from None
        except UnicodeDecodeError:
            after = f" (after record {self.records_read})" if self.records_read else ""
            raise self.error(f"not a text file (binary or non-UTF-8 content){after}") from None
        except OSError as err:
            raise self.error(f"cannot read ({err.strerror or err})") from None
        finally:
            reader.close()

    def _records(self, reader: HashingReader, seen: SeenIds | None) -> Iterator[SequenceRecord]:
        buffered = io.BufferedReader(reader, buffer_size=_READ_BUFFER)
        head = buffered.peek(_SNIFF_BYTES)
        if not head:
            raise self.error("empty file")
        if head[:2] in UTF16_MARKS:
            raise self.error("UTF-16 text: save it as ASCII or UTF-8")
        for magic, what in OTHER_FORMATS.items():
            if head.startswith(magic):
                raise self.error(f"{what}: only plain or gzip-compressed FASTA/FASTQ is read")
        self.compressed = head[:2] == GZIP_MAGIC
        binary = gzip.GzipFile(fileobj=buffered, mode="rb") if self.compressed else buffered
        if b"\x00" in binary.peek(_SNIFF_BYTES)[:_SNIFF_BYTES]:  # before looking for a line end
            raise self.error("not a text file (binary content)")
        # utf-8-sig: a byte-order mark at the start (Windows editors write one) is skipped.
        text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline=None)
        first, line_number = "", 0
        for line_number, first in enumerate(text, start=1):  # noqa: B007 (used after the loop)
            if first.strip():
                break
        else:
            raise self.error("no records (the file holds only blank lines)")
        if "\x00" in first:
            raise self.error("not a text file (binary content)")
        lines = _Lines(first, text)
        if first.startswith(">"):
            self.format = "fasta"
            parsed = SimpleFastaParser(lines)
        elif first.startswith("@"):
            self.format = "fastq"
            parsed = self._fastq(lines)
        else:
            raise self.error(
                f"line {line_number} comes before the first header: expected '>' (FASTA) or '@' (FASTQ)"
            )
        number = 0
        for number, (title, sequence) in enumerate(parsed, start=1):
            seq_id = title.split(maxsplit=1)[0] if title and not title[0].isspace() else ""
            if not seq_id:
                raise self.error("header has no id (nothing right after '>' or '@')", number)
            if len(seq_id) > MAX_ID_CHARACTERS:
                raise self.error(
                    f"id of {len(seq_id):,} characters (at most {MAX_ID_CHARACTERS:,}): "
                    f"{printable(seq_id[:40])}...",
                    number,
                )
            if "\x00" in title:
                raise self.error("not a text file (binary content)", number)
            self._check_sequence(sequence, number, seq_id)
            if seen is not None:
                seen.add(seq_id, self.file_number, number)
            self.records_read = number
            yield SequenceRecord(number, seq_id, title, sequence, self.file_number)
        if number == 0:
            raise self.error("no records")
        while buffered.read(_READ_BUFFER):  # hash what the parser left unread (e.g. gzip padding)
            pass

    def _fastq(self, lines: _Lines) -> Iterator[tuple[str, str]]:
        number = 0
        try:
            # `number` names the failing record in the error below.
            for number, (title, seq, _quality) in enumerate(FastqGeneralIterator(lines), start=1):  # noqa: B007
                yield title, seq
        except ValueError as err:
            message = str(err).rstrip(".")
            if "length" in message.lower():
                message = "quality string length differs from the sequence length"
            raise self.error(f"malformed FASTQ: {message}", number + 1) from None

    def _check_sequence(self, sequence: str, number: int, seq_id: str) -> None:
        """IUPAC codes (and X) are nucleotides; a letter that cannot be one means protein."""
        if sequence.isascii():
            data = sequence.encode("ascii")
            others = data.translate(None, _NUCLEOTIDE_BYTES)
            if not others:  # the usual case: nothing but nucleotide codes
                return
            position = data.index(others[0])
        else:
            position = next(i for i, c in enumerate(sequence) if not c.isascii())
        bad = sequence[position]
        if bad in _PROTEIN_ONLY:
            problem = (
                f"looks like protein, not DNA: {bad!r} at sequence position {position + 1} is not a "
                f"nucleotide code (IUPAC: {' '.join(NUCLEOTIDE_CODES)}); give nucleotide sequences"
            )
        elif bad == "\x00":
            problem = "not a text file (binary content)"
        else:
            problem = (
                f"unexpected character {bad!r} at sequence position {position + 1} "
                "(a DNA sequence holds IUPAC nucleotide codes only)"
            )
        raise self.error(problem, number, seq_id)


class SequenceInputs:
    """The files of one sample, read in the given order as one stream of records."""

    def __init__(self, paths: str | Path | Sequence[str | Path]):
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        if not paths:
            raise InputError("no input file given")
        self.files = [SequenceFile(path, number) for number, path in enumerate(paths, start=1)]
        if sum(str(f.path) == STDIN for f in self.files) > 1:
            raise InputError("standard input (-) can be given once only")
        # One file under two names (./x and x, a symbolic or hard link) is the same file given twice.
        seen: dict[tuple[int, int], SequenceFile] = {}
        for file in self.files:
            if str(file.path) != STDIN and file.path.exists():
                status = file.path.stat()
                earlier = seen.setdefault((status.st_dev, status.st_ino), file)
                if earlier is not file:
                    raise InputError(f"{file.name}: given twice (as {earlier.name} too); give each file once")

    def check(self) -> None:
        """Every file exists and can be opened (checked before any work starts)."""
        for file in self.files:
            file.check()

    @property
    def size(self) -> int | None:
        """Bytes in all files, None when one is a stream."""
        sizes = [f.size for f in self.files]
        return None if None in sizes else sum(sizes)

    def bytes_read(self) -> int:
        return sum(f.bytes_read() for f in self.files)

    def records(self, check_duplicates: bool = True) -> Iterator[SequenceRecord]:
        seen = SeenIds(self.files) if check_duplicates else None
        for file in self.files:
            yield from file.records(seen)
        if seen is not None:
            seen.finish()


class SeenIds:
    """The ids of a sample read so far, to refuse a duplicate, in memory that does not hold the ids:
    the ids of the last `BATCH` records as strings (a duplicate among them is found at once), and
    of every earlier record a 64-bit hash, in a few sorted numpy runs (8 bytes an id; merged as they
    grow, like a binary counter). A batch's hashes are looked up together when it is full; a hash
    found again means a duplicate only if the earlier records hold that very id, which a second
    read of the files up to the batch then checks (exact: a hash collision, one in some 10^12 at
    10^7 reads, is not an error). Standard input and pipes cannot be read twice: their ids are kept
    whole, as strings."""

    BATCH = 1 << 16

    def __init__(self, files: Sequence[SequenceFile]):
        self.files = files
        self.exact: dict[str, int] | None = {} if any(is_stream(f.path) for f in files) else None
        self.batch: dict[str, tuple[int, int]] = {}  # id: (file number, record number)
        self.runs: list[np.ndarray] = []

    @staticmethod
    def hash(seq_id: str) -> int:
        return hash(seq_id)  # 64-bit, and the same within this process

    def add(self, seq_id: str, file_number: int, number: int) -> None:
        if self.exact is not None:
            known = len(self.exact)
            earlier = self.exact.setdefault(seq_id, file_number)
            if len(self.exact) == known:  # read before
                self._refuse(seq_id, file_number, number, earlier)
            return
        earlier = self.batch.setdefault(seq_id, (file_number, number))
        if earlier != (file_number, number):
            self._refuse(seq_id, file_number, number, earlier[0])
        if len(self.batch) >= self.BATCH:
            self.flush()

    def finish(self) -> None:
        self.flush()

    def flush(self) -> None:
        if not self.batch:
            return
        ids = list(self.batch)
        hashes = np.fromiter(map(self.hash, ids), dtype=np.int64, count=len(ids))
        found = np.zeros(len(ids), dtype=bool)
        for run in self.runs:
            at = np.minimum(np.searchsorted(run, hashes), len(run) - 1)
            found |= run[at] == hashes
        if found.any():
            self._confirm({ids[i] for i in np.flatnonzero(found)})
        hashes.sort()
        while self.runs and len(self.runs[-1]) <= len(hashes):
            hashes = np.sort(np.concatenate([self.runs.pop(), hashes]), kind="mergesort")
        self.runs.append(hashes)
        self.batch = {}

    def _confirm(self, candidates: set[str]) -> None:
        """Read the sample again up to this batch; refuse the batch's first id found there."""
        first_file, first_number = next(iter(self.batch.values()))
        for file in self.files[:first_file]:
            again = SequenceFile(file.path, file.file_number)
            for record in again.records():
                if (record.file, record.number) >= (first_file, first_number):
                    break
                if record.id in candidates:
                    file_number, number = self.batch[record.id]
                    self._refuse(record.id, file_number, number, record.file)

    def _refuse(self, seq_id: str, file_number: int, number: int, earlier_file: int) -> None:
        file = self.files[file_number - 1]
        if earlier_file == file_number:
            raise file.error("duplicate sequence id (ids must be unique)", number, seq_id)
        raise file.error(
            f"duplicate sequence id: also in {self.files[earlier_file - 1].name} "
            "(ids must be unique across a sample's files)",
            number,
            seq_id,
        )


def read_sequences(
    paths: str | Path | Sequence[str | Path], check_duplicates: bool = True
) -> Iterator[SequenceRecord]:
    """Stream the checked records of one or several FASTA/FASTQ files (plain or gzip), in order."""
    return SequenceInputs(paths).records(check_duplicates=check_duplicates)
