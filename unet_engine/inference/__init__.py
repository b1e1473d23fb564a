"""Running a model on a volume: sliding windows, TTA, streaming partial results."""
