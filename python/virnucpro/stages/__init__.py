"""One module per stage, each with the entry function its command calls: prepare, embed, predict,
report, calibrate, train, download, and run (all stages in one process)."""
