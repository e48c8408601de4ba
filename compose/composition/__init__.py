"""Composition blocks (Stack, Fuse, Average, Route) and the layers and merges that run them."""
