"""cli face of adapterhub."""
