"""The engine's core: the model wrapper, its public methods, and what it knows of an architecture."""
