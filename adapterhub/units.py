"""Numbers as people read them, shared by the faces (the CLI's tables and the UI's pages).

It lives beside errors.py and vocab.py, not in ``adapterhub.cli``, so that the UI does not import
the CLI (the faces are independent: ARCHITECTURE.md); like them it imports only the standard
library.

>>> human_size(1536)
'1.5 KiB'
>>> human_size(None)
''
"""

from __future__ import annotations


def human_size(n: int | None) -> str:
    """``n`` bytes in the largest binary unit below it (up to GiB); ``""`` when unknown, so a
    caller picks its own placeholder (the UI shows a dash)."""
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)
