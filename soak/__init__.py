"""The soak and fault suite: `python -m soak.run` (see soak/run.py), figures in RELIABILITY.md."""
