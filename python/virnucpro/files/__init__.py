"""Files the stages share: where each output lives (layout), writing safely (atomic, lock, outdir,
ownership, checksums) and the formats read and written (sequences, shards, embeddings, scores, JSON,
torch archives). Imports nothing above it."""
