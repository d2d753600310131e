"""VirNucPro, the pipeline: find viral sequences with six-frame translation, DNABERT-S and ESM-2
embeddings and an MLP classifier."""

__version__ = "0.1.0"
