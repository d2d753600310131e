"""The embedding stage's machinery: the two models behind one interface (`engine`), the settings as
one object (`options`), the one-worker-per-device pool over shard files (`pool`, `worker`, `jobs`),
devices and FP8 (`devices`, `fp8`, `gpu_slots`), and the CPU/GPU agreement check (`agreement`)."""
