"""Chunking and six-frame translation, exactly as the original VirNucPro computes them.

The reference semantics, per chunk (design section 4): uppercase; forward strand = chunk, reverse
strand = reverse complement with only A/C/G/T complemented; for each strand and frame offset f,
translate codons s[i:i+3] for i = f, f+3, ... while i <= len-3, dropping any codon that is not
three of A/C/G/T; keep the frame when the protein is non-empty and has no stop; its nucleotides are
strand[f : f + 3*len(protein) + 1].

The implementation computes the amino acid of every codon position once per batch of sequences
(numpy over one concatenated buffer, forward and reverse complement) and then reads each chunk's
frames as strided byte slices, so no Python code runs per codon.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

FRAME_LABELS = ("F1", "F2", "F3", "R1", "R2", "R3")

_BASES = "TCAG"
_AMINO_ACIDS = "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG"
STANDARD_CODE = {
    a + b + c: _AMINO_ACIDS[16 * i + 4 * j + k]
    for i, a in enumerate(_BASES)
    for j, b in enumerate(_BASES)
    for k, c in enumerate(_BASES)
}

_DROPPED = ord("-")  # marks a codon that is not three of A/C/G/T; removed from proteins
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


def chunk_bounds(length: int, size: int) -> list[tuple[int, int]]:
    """(start, end) of each chunk of a sequence of `length`, 0-based half-open, as the original cuts.

    The chunks overlap evenly so that n = ceil(length/size) chunks of `size` cover the sequence;
    the last chunk is often shorter than `size` (a quirk of the original kept for parity).
    """
    if length <= 0:
        return []
    if size <= 0:
        raise ValueError("chunk size must be positive")
    n = -(-length // size)
    spare = n * size - length
    low = spare // n
    n_up = spare - low * (n - 1)
    shifts = ([low + 1] * n_up + [low] * max(0, n - 1 - n_up) + [0])[:n]
    bounds = []
    shifted = 0  # shifts[0] + ... + shifts[i-1]
    for i in range(n):
        if i:
            shifted += shifts[i - 1]
        begin = i * size - shifted
        bounds.append((begin, min(begin + size, length)))
    return bounds


@dataclass(frozen=True, slots=True)
class Frame:
    label: str  # F1..F3, R1..R3
    nucleotides: bytes
    protein: bytes


class _TranslatedBuffer:
    """Amino acid at every codon position of a buffer and of its reverse complement."""

    def __init__(self, upper: bytes):
        self.length = len(upper)
        self.forward = upper
        self.reverse = upper.translate(_COMPLEMENT)[::-1]
        if self.length < 3:
            self.forward_aa = self.reverse_aa = b""
            return
        codes = np.frombuffer(upper.translate(_BASE_CODE), dtype=np.uint8)
        # Codes are < 5, so the index stays below 125 in uint8.
        index = (codes[:-2] * np.uint8(25) + codes[1:-1] * np.uint8(5) + codes[2:]).tobytes()
        self.forward_aa = index.translate(_CODON_AA)
        # The reverse strand's codon at q is the reverse complement of the forward codon at
        # length-3-q: one lookup in the reverse-complement table, read backwards.
        self.reverse_aa = index[::-1].translate(_REVERSE_CODON_AA)

    def frames(self, begin: int, end: int) -> list[Frame]:
        """The kept frames of the chunk buffer[begin:end], in F1..R3 order."""
        kept = []
        strands = (
            (self.forward, self.forward_aa, begin, end, "F"),
            (self.reverse, self.reverse_aa, self.length - end, self.length - begin, "R"),
        )
        for strand, amino_acids, lo, hi, prefix in strands:
            last_codon_end = max(hi - 2, 0)  # never negative: a negative slice end counts from the end
            for offset in range(3):
                start = lo + offset
                codons = amino_acids[start:last_codon_end:3]
                if b"*" in codons:  # most frames of real data: rejected before any copy
                    continue
                protein = codons.translate(None, _DROPPED_BYTE)
                if not protein:
                    continue
                stop = min(start + 3 * len(protein) + 1, hi)
                kept.append(Frame(f"{prefix}{offset + 1}", strand[start:stop], protein))
        return kept


@dataclass(frozen=True, slots=True)
class Chunk:
    sequence_index: int  # position of the sequence in the batch given to `translate_chunks`
    index: int  # 1-based chunk number within its sequence
    start: int  # 0-based, half-open
    end: int
    frames: list[Frame]


def translate_chunks(sequences: Iterable[str], chunk_size: int) -> Iterator[Chunk]:
    """Chunk each sequence and translate every chunk in six frames, in input order.

    Sequences are processed together (one concatenated buffer), which is what makes this fast for
    many short reads; pass batches of a few megabases for bounded memory.
    """
    sequences = list(sequences)
    buffer = _TranslatedBuffer("".join(sequences).upper().encode("ascii"))
    offset = 0
    for sequence_index, sequence in enumerate(sequences):
        for index, (start, end) in enumerate(chunk_bounds(len(sequence), chunk_size), start=1):
            yield Chunk(sequence_index, index, start, end, buffer.frames(offset + start, offset + end))
        offset += len(sequence)
