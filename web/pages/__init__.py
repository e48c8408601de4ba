"""Streamlit pages, one per file; each is a thin script over ``adapterhub.web.state/views/engine``."""
