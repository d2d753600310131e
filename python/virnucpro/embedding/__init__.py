"""The embedding stage: batching and pooling (`batching`), the two models behind one interface
(`engine`), and the one-worker-per-device pool over shard files (`pool`)."""
