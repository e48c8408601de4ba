"""web face of adapterhub."""
