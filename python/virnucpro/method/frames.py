"""Chunking and six-frame translation, exactly as the original VirNucPro computes them.

The original's semantics, per chunk: uppercase; forward strand = chunk, reverse
strand = reverse complement with only A/C/G/T complemented; for each strand and frame offset f,
translate codons s[i:i+3] for i = f, f+3, ... while i <= len-3, dropping any codon that is not
three of A/C/G/T; keep the frame when the protein is non-empty and has no stop; its nucleotides are
strand[f : f + 3*len(protein) + 1].

The implementation works on a batch of sequences at once (one concatenated buffer) and runs no
Python code per codon nor, for the frames that are rejected, per frame:
- the amino acid of every codon position, and of its reverse complement, comes from one byte-table
  lookup over the buffer;
- whether a frame holds a stop is one numpy `reduceat` over all frames of the batch: a frame's codons
  are every third position, i.e. a contiguous run in the buffer's stop flags laid out by position
  modulo 3; the reverse strand is read in forward coordinates (its codon at forward position p is
  the reverse complement of the forward codon at p);
- only the stop-free frames (few in real data) are sliced out in Python.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

FRAME_LABELS = ("F1", "F2", "F3", "R1", "R2", "R3")
# "F1,R2" etc. for every subset of the six frames, indexed by its bit mask (bit i = FRAME_LABELS[i]).
FRAME_SETS = tuple(",".join(FRAME_LABELS[i] for i in range(6) if mask >> i & 1) for mask in range(64))

_BASES = "TCAG"
_AMINO_ACIDS = "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG"
STANDARD_CODE = {
    a + b + c: _AMINO_ACIDS[16 * i + 4 * j + k]
    for i, a in enumerate(_BASES)
    for j, b in enumerate(_BASES)
    for k, c in enumerate(_BASES)
}

_DROPPED = ord("-")  # marks a codon that is not three of A/C/G/T; removed from proteins
_STOP = ord("*")
_INVALID = 4
# Base code per byte: A=0, C=1, G=2, T=3, anything else 4 (input is uppercased first).
_BASE_CODE = bytes(b"ACGT".index(byte) if byte in b"ACGT" else _INVALID for byte in range(256))
# Codon index code0*25 + code1*5 + code2 (base 5, so a codon with an invalid base stays apart) to
# the amino acid of the codon, and to the amino acid of its reverse complement.
# Both are 256-byte tables for bytes.translate, which looks up faster than numpy indexing.
_CODON_AA = bytearray([_DROPPED] * 256)
_REVERSE_CODON_AA = bytearray([_DROPPED] * 256)
_COMPLEMENT = bytes.maketrans(b"ACGT", b"TGCA")
for _codon, _aa in STANDARD_CODE.items():
    _c = [b"ACGT".index(ch.encode()) for ch in _codon]
    _CODON_AA[_c[0] * 25 + _c[1] * 5 + _c[2]] = ord(_aa)
    _r = [3 - code for code in reversed(_c)]
    _REVERSE_CODON_AA[_r[0] * 25 + _r[1] * 5 + _r[2]] = ord(_aa)
_CODON_AA, _REVERSE_CODON_AA = bytes(_CODON_AA), bytes(_REVERSE_CODON_AA)
_DROPPED_BYTE = bytes([_DROPPED])


def chunk_table(
    lengths: Sequence[int] | np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The chunks of sequences of the given lengths, as the original cuts them.

    Returns, per chunk in order: the sequence's position in `lengths`, the 1-based chunk number, and
    the 0-based half-open start and end within the sequence. The n = ceil(length/size) chunks of a
    sequence overlap evenly so that they cover it; the last chunk is often shorter than `size` (a
    quirk of the original kept for parity). The original shifts chunk i back by the sum of its
    first i shifts, [low+1]*n_up + [low]*..., which is i*low + min(i, n_up).
    """
    if size <= 0:
        raise ValueError("chunk size must be positive")
    lengths = np.asarray(lengths, dtype=np.int64)
    n = -(-lengths // size)
    sequence = np.repeat(np.arange(len(lengths)), n)
    first_row = np.cumsum(n) - n
    i = np.arange(len(sequence)) - first_row[sequence]  # 0-based chunk number within its sequence
    spare = (n * size - lengths)[sequence]
    count = n[sequence]
    low = spare // count
    n_up = spare - low * (count - 1)
    start = i * (size - low) - np.minimum(i, n_up)
    end = np.minimum(start + size, lengths[sequence])
    return sequence, i + 1, start, end


def chunk_bounds(length: int, size: int) -> list[tuple[int, int]]:
    """(start, end) of each chunk of one sequence of `length`, 0-based half-open."""
    _, _, start, end = chunk_table([length], size)
    return list(zip(start.tolist(), end.tolist(), strict=True))


@dataclass(frozen=True, slots=True)
class TranslatedBatch:
    """Every chunk of a batch of sequences with its kept frames.

    Per chunk (numpy arrays, in input order): `sequence` (position in the batch), `index` (1-based
    chunk number), `start`/`end` (0-based half-open, within the sequence), `frame_mask` (bit i set
    when FRAME_LABELS[i] is kept). `frames` lists the kept frames in output order (chunk, then
    F1..R3) as (chunk row, label number, nucleotides, protein).
    """

    sequence: np.ndarray
    index: np.ndarray
    start: np.ndarray
    end: np.ndarray
    frame_mask: np.ndarray
    frames: list[tuple[int, int, bytes, bytes]]


def translate_batch(sequences: list[str], chunk_size: int) -> TranslatedBatch:
    """Chunk each sequence and translate every chunk in six frames.

    The sequences are processed as one concatenated buffer, which is what makes this fast for many
    short reads; pass batches of a few megabases for bounded memory.
    """
    lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
    sequence, index, start, end = chunk_table(lengths, chunk_size)
    offsets = np.cumsum(lengths) - lengths
    begin = start + offsets[sequence]  # chunk spans in buffer coordinates
    stop = end + offsets[sequence]
    buffer = "".join(sequences).encode("ascii").upper()
    length = len(buffer)
    n_chunks = len(begin)
    if length < 3 or not n_chunks:
        return TranslatedBatch(sequence, index, start, end, np.zeros(n_chunks, np.int64), [])

    codes = np.frombuffer(buffer.translate(_BASE_CODE), dtype=np.uint8)
    # Codes are < 5, so the index stays below 125 in uint8.
    codon = (codes[:-2] * np.uint8(25) + codes[1:-1] * np.uint8(5) + codes[2:]).tobytes()
    forward_aa = codon.translate(_CODON_AA)  # amino acid of the codon at each position
    reverse_aa = codon.translate(_REVERSE_CODON_AA)  # ... of its reverse complement

    # Stop flags of both strands laid out as (strand, position % 3, position // 3), flattened, with
    # a zero row at the end of each run so that a frame's exclusive end index stays inside it.
    rows = (length - 2) // 3 + 2
    flags = np.zeros((2, rows * 3), dtype=bool)
    flags[0, : length - 2] = np.frombuffer(forward_aa, dtype=np.uint8) == _STOP
    flags[1, : length - 2] = np.frombuffer(reverse_aa, dtype=np.uint8) == _STOP
    by_phase = flags.reshape(2, rows, 3).transpose(0, 2, 1).ravel()

    # First and last codon position of each of the six frames of each chunk, forward coordinates.
    offset = np.arange(3)
    last_start = stop[:, None] - 3  # the last position where a codon of the chunk can start
    forward_first = begin[:, None] + offset
    forward_codons = np.maximum((last_start - forward_first) // 3 + 1, 0)
    reverse_top = last_start - offset  # the reverse frame's first codon, read downwards
    reverse_codons = np.maximum((reverse_top - begin[:, None]) // 3 + 1, 0)
    reverse_low = reverse_top - 3 * np.maximum(reverse_codons - 1, 0)
    low = np.concatenate([forward_first, reverse_low], axis=1)  # (chunk, frame)
    codons = np.concatenate([forward_codons, reverse_codons], axis=1)
    strand = np.repeat(np.array([[0, 0, 0, 1, 1, 1]]), n_chunks, axis=0)
    run = (strand * 3 + low % 3) * rows + low // 3
    some = (codons > 0).ravel()  # frames without a codon read the placeholder span [0, 1), unused
    first = np.where(some, run.ravel(), 0)
    # reduceat also reduces the gap between one span's end and the next span's start; visiting
    # the spans in order of position keeps those gaps short (the sum of all is one pass).
    order = np.argsort(first, kind="stable")
    bounds = np.empty(2 * first.size, dtype=np.int64)
    bounds[0::2] = first[order]
    bounds[1::2] = np.where(some, first + codons.ravel(), 1)[order]
    has_stop = np.empty(first.size, dtype=bool)
    has_stop[order] = np.logical_or.reduceat(by_phase, bounds)[0::2]
    kept = (~has_stop & some).reshape(n_chunks, 6)  # until read out, below

    # Only the stop-free frames are read out; a frame whose codons were all dropped is not kept.
    frames = []
    chunk_rows, labels = np.nonzero(kept)
    columns = (chunk_rows, labels, begin[chunk_rows], stop[chunk_rows])
    spans = zip(*(column.tolist() for column in columns), strict=True)
    for row, label, lo, hi in spans:
        if label < 3:
            frame_start = lo + label
            protein = forward_aa[frame_start : max(hi - 2, 0) : 3].translate(None, _DROPPED_BYTE)
            if not protein:
                kept[row, label] = False
                continue
            nucleotides = buffer[frame_start : min(frame_start + 3 * len(protein) + 1, hi)]
            frames.append((row, label, nucleotides, protein))
        else:
            top = hi - 3 - (label - 3)
            protein = reverse_aa[top : lo - 1 if lo else None : -3].translate(None, _DROPPED_BYTE)
            if not protein:
                kept[row, label] = False
                continue
            # The reverse strand's span, read in forward coordinates and complemented.
            strand_end = hi - (label - 3)
            nucleotides = buffer[max(strand_end - 3 * len(protein) - 1, lo) : strand_end]
            frames.append((row, label, nucleotides.translate(_COMPLEMENT)[::-1], protein))
    frame_mask = kept @ (1 << np.arange(6))
    return TranslatedBatch(sequence, index, start, end, frame_mask, frames)


@dataclass(frozen=True, slots=True)
class Frame:
    label: str  # F1..F3, R1..R3
    nucleotides: bytes
    protein: bytes


@dataclass(frozen=True, slots=True)
class Chunk:
    sequence_index: int  # position of the sequence in the batch given to `translate_chunks`
    index: int  # 1-based chunk number within its sequence
    start: int  # 0-based, half-open
    end: int
    frames: list[Frame]


def translate_chunks(sequences: Iterable[str], chunk_size: int) -> Iterator[Chunk]:
    """The chunks of `translate_batch` one object each, for callers that want a simple view."""
    batch = translate_batch(list(sequences), chunk_size)
    frames: list[list[Frame]] = [[] for _ in range(len(batch.start))]
    for row, label, nucleotides, protein in batch.frames:
        frames[row].append(Frame(FRAME_LABELS[label], nucleotides, protein))
    columns = (batch.sequence.tolist(), batch.index.tolist(), batch.start.tolist(), batch.end.tolist())
    for row, (sequence, index, start, end) in enumerate(zip(*columns, strict=True)):
        yield Chunk(sequence, index, start, end, frames[row])
