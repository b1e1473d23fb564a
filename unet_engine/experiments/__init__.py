"""Experiments built on the engine: the human-in-the-loop simulation (`segloop loop-sim`)."""
