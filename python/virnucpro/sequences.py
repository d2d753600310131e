"""Reading and checking input sequences: FASTA or FASTQ, plain or gzip, recognised by content.

Records stream one at a time (memory follows the longest sequence, not the file). Biopython's
low-level parsers do the parsing; this module adds the checks they lack and turns every problem
into one `InputError` line that names the file, the record and what is wrong.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

from Bio.SeqIO.FastaIO import SimpleFastaParser
from Bio.SeqIO.QualityIO import FastqGeneralIterator

from virnucpro.errors import InputError

GZIP_MAGIC = b"\x1f\x8b"
_ASCII_LETTERS = bytes(range(ord("A"), ord("Z") + 1)) + bytes(range(ord("a"), ord("z") + 1))
_NUCLEOTIDE_LETTERS = b"ACGTUNacgtun"
# Below this share of A/C/G/T/U/N among its letters a record is taken for protein, not DNA.
MIN_NUCLEOTIDE_FRACTION = 0.5


class SequenceRecord(NamedTuple):  # a tuple: millions of short reads are built quickly
    number: int  # 1-based position of the record in its file
    id: str  # first word of the header
    header: str  # the whole header line without its '>' or '@'
    sequence: str


class SequenceFile:
    """An input file opened for streaming; `records()` yields checked `SequenceRecord`s once.

    `bytes_read()` reports progress through the file as stored (compressed bytes for gzip).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._raw: BinaryIO | None = None
        self.format = ""
        self.compressed = False

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    def bytes_read(self) -> int:
        if self._raw is None:
            return 0
        return self.size if self._raw.closed else self._raw.tell()  # closed = read to the end

    def _error(self, problem: str, record: int | None = None, seq_id: str | None = None) -> InputError:
        where = f"{self.path}"
        if record is not None:
            where += f": record {record}" + (f" ({seq_id})" if seq_id else "")
        return InputError(f"{where}: {problem}")

    def records(self, check_duplicates: bool = True) -> Iterator[SequenceRecord]:
        if not self.path.exists():
            raise self._error("no such file")
        if self.path.is_dir():
            raise self._error("is a folder, not a sequence file")
        try:
            raw = open(self.path, "rb")  # noqa: SIM115 (closed in the finally below)
        except OSError as err:
            raise self._error(f"cannot open ({err.strerror})") from None
        self._raw = raw
        try:
            yield from self._records(raw, check_duplicates)
        except (EOFError, zlib.error, gzip.BadGzipFile) as err:
            raise self._error(f"truncated or corrupt gzip data ({err})") from None
        except UnicodeDecodeError:
            raise self._error("not a text file (binary or non-UTF-8 content)") from None
        finally:
            raw.close()

    def _records(self, raw: BinaryIO, check_duplicates: bool) -> Iterator[SequenceRecord]:
        magic = raw.read(2)
        raw.seek(0)
        if not magic:
            raise self._error("empty file")
        self.compressed = magic == GZIP_MAGIC
        peek = self._text(raw)
        first, line_number = _first_non_blank_line(peek)
        peek.detach()  # a discarded wrapper would close the file under us
        if first is None:
            raise self._error("no records (the file holds only blank lines)")
        if "\x00" in first:
            raise self._error("not a text file (binary content)")
        # Reopen from the start: the parsers need a real text handle, and skip leading blank lines.
        raw.seek(0)
        text = self._text(raw)
        if first.startswith(">"):
            self.format = "fasta"
            parsed = SimpleFastaParser(text)
        elif first.startswith("@"):
            self.format = "fastq"
            parsed = self._fastq(text)
        else:
            raise self._error(
                f"line {line_number} comes before the first header: expected '>' (FASTA) or '@' (FASTQ)"
            )
        seen: set[str] = set()
        number = 0
        for number, (title, sequence) in enumerate(parsed, start=1):
            seq_id = title.split(maxsplit=1)[0] if title and not title[0].isspace() else ""
            if not seq_id:
                raise self._error("header has no id (nothing right after '>' or '@')", number)
            if "\x00" in title:
                raise self._error("not a text file (binary content)", number)
            self._check_sequence(sequence, number, seq_id)
            if check_duplicates:
                if seq_id in seen:
                    raise self._error("duplicate sequence id (ids must be unique)", number, seq_id)
                seen.add(seq_id)
            yield SequenceRecord(number, seq_id, title, sequence)
        if number == 0:
            raise self._error("no records")

    def _text(self, raw: BinaryIO) -> io.TextIOWrapper:
        binary = gzip.GzipFile(fileobj=raw, mode="rb") if self.compressed else raw
        return io.TextIOWrapper(binary, encoding="utf-8", newline=None)

    def _fastq(self, text: io.TextIOWrapper) -> Iterator[tuple[str, str]]:
        number = 0
        try:
            # `number` names the failing record in the error below.
            for number, (title, seq, _quality) in enumerate(FastqGeneralIterator(text), start=1):  # noqa: B007
                yield title, seq
        except ValueError as err:
            message = str(err).rstrip(".")
            if "length" in message.lower():
                message = "quality string length differs from the sequence length"
            raise self._error(f"malformed FASTQ: {message}", number + 1) from None

    def _check_sequence(self, sequence: str, number: int, seq_id: str) -> None:
        try:
            data = sequence.encode("ascii")
        except UnicodeEncodeError:
            data = sequence.encode("utf-8", "replace")
        others = data.translate(None, _NUCLEOTIDE_LETTERS)
        if not others:  # the usual case: nothing but nucleotide letters
            return
        not_letters = others.translate(None, _ASCII_LETTERS)
        if not_letters:
            bad = not_letters[:1].decode("utf-8", "replace")
            position = data.index(not_letters[:1]) + 1 if bad != "\ufffd" else "?"
            if bad == "\x00":
                raise self._error("not a text file (binary content)", number, seq_id)
            raise self._error(
                f"unexpected character {bad!r} at sequence position {position} "
                "(a DNA sequence holds letters only)",
                number,
                seq_id,
            )
        nucleotides = len(data) - len(others)
        if nucleotides < MIN_NUCLEOTIDE_FRACTION * len(data):
            raise self._error(
                f"looks like protein, not DNA: only {100 * nucleotides / len(data):.0f}% of its letters "
                "are A, C, G, T, U or N; give nucleotide sequences",
                number,
                seq_id,
            )


def _first_non_blank_line(text: io.TextIOWrapper) -> tuple[str | None, int]:
    for number, line in enumerate(text, start=1):
        if line.strip():
            return line, number
    return None, 0


def read_sequences(path: str | Path, check_duplicates: bool = True) -> Iterator[SequenceRecord]:
    """Stream the checked records of a FASTA/FASTQ file, plain or gzip."""
    return SequenceFile(path).records(check_duplicates=check_duplicates)
