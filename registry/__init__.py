"""The registry: the server (FastAPI, never imports torch), the HTTP client and the local cache."""
