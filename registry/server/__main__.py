"""``python -m adapterhub.registry.server --host 127.0.0.1 --port 8000``."""

from __future__ import annotations

import argparse

from adapterhub.registry.server.app import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m adapterhub.registry.server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    serve(host=args.host, port=args.port)


if __name__ == "__main__":
    main()
