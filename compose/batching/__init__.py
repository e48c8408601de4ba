"""Per-row adapters: one adapter or composition per row of a batch, in one vectorised pass."""
