"""The embedding models and where they come from: `dnabert_s` (the native DNABERT-S architecture
and its tokenizer), `esm2` (ESM-2 through transformers), `sources` (hub id, URL or local path)."""
