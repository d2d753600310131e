"""The method, free of files and models: six-frame translation, calls and thresholds, confidence tiers,
viral regions, calibration and the MLP classifier. Imports only `files` (and the leaf modules)."""
