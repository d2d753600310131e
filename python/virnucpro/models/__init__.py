"""The models and where they come from: `dnabert_s` (the native DNABERT-S architecture and its
tokenizer), `esm2` (ESM-2 through transformers), `sources` (hub id, URL or local path), `checkpoints`
(reading weights safely), `batching` and `precision` (what the models' forward passes take),
`classifier_weights` (a classifier as the user names it), `tiny` (small random models for tests)."""
