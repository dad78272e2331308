"""Data: raw layouts → prepared data set (manifest, splits, cached arrays) → training batches."""
