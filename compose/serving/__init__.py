"""Serving many adapters over one base model: resolve, cache, batch, report, and the HTTP face."""
