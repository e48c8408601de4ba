"""The composition engine: adapters attached to a frozen transformers model, and their compositions.

Importing this package is cheap; torch loads with the submodules that need it.
"""
