"""Retraining datasets: cases on disk, their journal and lock, import and export."""
