"""Chunking and six-frame translation against a plain per-codon reference of the original's
semantics (written here, independently of the vectorised implementation) and the original's
golden outputs."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from virnucpro.method.frames import STANDARD_CODE, chunk_bounds, translate_chunks

# --- the reference: the original VirNucPro semantics, one codon at a time -----------------------

CODON_TABLE = {
    "TTT": "F", "TTC": "F", "TTA": "L", "TTG": "L", "CTT": "L", "CTC": "L", "CTA": "L", "CTG": "L",
    "ATT": "I", "ATC": "I", "ATA": "I", "ATG": "M", "GTT": "V", "GTC": "V", "GTA": "V", "GTG": "V",
    "TCT": "S", "TCC": "S", "TCA": "S", "TCG": "S", "CCT": "P", "CCC": "P", "CCA": "P", "CCG": "P",
    "ACT": "T", "ACC": "T", "ACA": "T", "ACG": "T", "GCT": "A", "GCC": "A", "GCA": "A", "GCG": "A",
    "TAT": "Y", "TAC": "Y", "TAA": "*", "TAG": "*", "CAT": "H", "CAC": "H", "CAA": "Q", "CAG": "Q",
    "AAT": "N", "AAC": "N", "AAA": "K", "AAG": "K", "GAT": "D", "GAC": "D", "GAA": "E", "GAG": "E",
    "TGT": "C", "TGC": "C", "TGA": "*", "TGG": "W", "CGT": "R", "CGC": "R", "CGA": "R", "CGG": "R",
    "AGT": "S", "AGC": "S", "AGA": "R", "AGG": "R", "GGT": "G", "GGC": "G", "GGA": "G", "GGG": "G",
}  # fmt: skip


def reference_chunks(sequence: str, size: int) -> list[str]:
    length = len(sequence)
    if length == 0:
        return []
    n = math.ceil(length / size)
    spare = n * size - length
    low = spare // n
    n_up = spare - low * (n - 1)
    shifts = ([low + 1] * n_up + [low] * max(0, n - 1 - n_up) + [0])[:n]
    return [sequence[i * size - sum(shifts[:i]) :][:size] for i in range(n)]


def reference_translate(strand: str) -> str:
    protein = ""
    for i in range(0, len(strand) - 2, 3):
        codon = strand[i : i + 3]
        if codon in CODON_TABLE:
            protein += CODON_TABLE[codon]
    return protein


def reference_frames(chunk: str) -> list[tuple[str, str, str]]:
    upper = chunk.upper()
    complement = {"A": "T", "T": "A", "C": "G", "G": "C"}
    reverse = "".join(complement.get(base, base) for base in reversed(upper))
    kept = []
    for prefix, strand in (("F", upper), ("R", reverse)):
        for offset in range(3):
            protein = reference_translate(strand[offset:])
            if protein and "*" not in protein:
                kept.append(
                    (f"{prefix}{offset + 1}", strand[offset : offset + 3 * len(protein) + 1], protein)
                )
    return kept


# --- properties ----------------------------------------------------------------------------------

DNA_LETTERS = "ACGTacgtNnRYKMSWBDHVrykmswbdhvU"


def dna(min_size: int = 0, max_size: int = 1600):
    # Mostly plain bases so that stop-free frames occur, with IUPAC letters, N and lowercase mixed in.
    base = st.sampled_from("ACGT" * 6 + "acgt" * 2 + DNA_LETTERS)
    return st.text(alphabet=base, min_size=min_size, max_size=max_size)


def stop_free(codons: int):
    sense = sorted(codon for codon, aa in STANDARD_CODE.items() if aa != "*")
    return st.lists(st.sampled_from(sense), min_size=codons, max_size=codons).map("".join)


def check_against_reference(sequences: list[str], size: int) -> None:
    produced = list(translate_chunks(sequences, size))
    expected = [
        (index, number, chunk)
        for index, sequence in enumerate(sequences)
        for number, chunk in enumerate(reference_chunks(sequence, size), start=1)
    ]
    assert [(c.sequence_index, c.index) for c in produced] == [(i, n) for i, n, _ in expected]
    for chunk, (index, _, reference_chunk) in zip(produced, expected, strict=True):
        assert sequences[index][chunk.start : chunk.end] == reference_chunk
        got = [(f.label, f.nucleotides.decode(), f.protein.decode()) for f in chunk.frames]
        assert got == reference_frames(reference_chunk)


@settings(max_examples=300, deadline=None)
@given(length=st.integers(0, 5000), size=st.sampled_from([300, 500]))
def test_chunk_bounds_match_the_original_formula(length, size):
    sequence = "".join("ACGT"[i % 4] for i in range(length))
    bounds = chunk_bounds(length, size)
    assert [sequence[a:b] for a, b in bounds] == reference_chunks(sequence, size)
    assert all(0 <= a < b <= length for a, b in bounds)
    if length:
        assert bounds[0][0] == 0 and bounds[-1][1] == length


@settings(max_examples=200, deadline=None)
@given(sequences=st.lists(dna(), min_size=1, max_size=6), size=st.sampled_from([300, 500]))
def test_random_sequences_match_the_reference(sequences, size):
    check_against_reference(sequences, size)


@settings(max_examples=100, deadline=None)
@given(
    sequences=st.lists(
        st.one_of(dna(0, 3), st.integers(-4, 4).flatmap(lambda d: dna(500 + d, 500 + d))), min_size=1
    )
)
def test_tiny_lengths_and_lengths_around_the_chunk_size(sequences):
    check_against_reference(sequences, 500)


@settings(max_examples=100, deadline=None)
@given(
    genes=st.lists(st.integers(50, 400).flatmap(stop_free), min_size=1, max_size=4),
    multiple=st.integers(1, 4),
    delta=st.integers(-3, 3),
    case=st.booleans(),
)
def test_coding_sequences_keep_frames_like_the_reference(genes, multiple, delta, case):
    # Stop-free genes make kept frames common, on sequences near multiples of the chunk size.
    sequence = "".join(genes)
    target = max(1, 300 * multiple + delta)
    sequence = (sequence * (target // len(sequence) + 1))[:target]
    if case:
        sequence = sequence.lower()
    check_against_reference([sequence, sequence[::-1]], 300)
    assert any(chunk.frames for chunk in translate_chunks([sequence], 300))


def test_codons_with_ambiguous_bases_are_dropped_not_translated_as_x():
    chunk = next(translate_chunks(["ATGNNNAAAGGG"], 500))
    forward = chunk.frames[0]
    assert (forward.label, forward.protein) == ("F1", b"MKG")
    # One base more than the codons kept, counted from the frame start (the original's slice).
    assert forward.nucleotides == b"ATGNNNAAAG"


def test_reverse_strand_complements_only_acgt():
    chunk = next(translate_chunks(["AAACCCRYT"], 500))
    reverse = {f.label: f for f in chunk.frames}["R1"]
    assert reverse.protein == b"GF"  # AYR (dropped) GGG TTT
    assert reverse.nucleotides == b"AYRGGGT"


def test_empty_and_sub_codon_sequences():
    assert list(translate_chunks([""], 500)) == []
    (chunk,) = translate_chunks(["ac"], 500)
    assert (chunk.start, chunk.end, chunk.frames) == (0, 2, [])


def test_a_large_mixed_batch_matches_the_reference():
    # One batch of many sequences: short and long, random and stop-free, with N runs and lowercase,
    # so that frames of every phase and strand lie side by side in one buffer (the batch-wide stop
    # search must not mix them up).
    rng = random.Random(20261129)
    sense = sorted(codon for codon, aa in STANDARD_CODE.items() if aa != "*")
    sequences = []
    for number in range(240):
        length = rng.choice([0, 1, 2, 3, 4, 299, 300, 301, 499, 500, 501, rng.randint(5, 4000)])
        if number % 3 == 0:
            sequence = "".join(rng.choices(sense, k=length // 3 + 1))[rng.randint(0, 2) :][:length]
        else:
            sequence = "".join(rng.choices("ACGTACGTACGTNacgtRY", k=length))
        if number % 7 == 0 and length > 20:
            cut = rng.randint(0, length - 10)
            sequence = sequence[:cut] + "N" * 10 + sequence[cut + 10 :]
        sequences.append(sequence)
    check_against_reference(sequences, 500)
    check_against_reference(sequences, 300)
    assert sum(len(chunk.frames) for chunk in translate_chunks(sequences, 500)) > 100
