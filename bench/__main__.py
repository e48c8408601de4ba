"""``python -m bench [--quick] [--only NAME]``: run the benchmarks, print tables, write ``bench/results/``.

``NAME`` selects by prefix of a row's key: ``engine``, ``engine/llama``, ``engine/bert/lora``,
``engine/train``. A ``--quick`` run (2 layers, 3 repeats) is a smoke test; its numbers are not the
published ones and go to ``<name>-quick.json``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from bench import common, composition, engine, load, registry_bench, serving, serving_ray

BENCHES: dict[str, tuple[Callable[[bool, Callable[[str], bool]], dict], Callable[[dict], None]]] = {
    "engine": (engine.run, engine.print_tables),
    "registry": (registry_bench.run, registry_bench.print_tables),
    "composition": (composition.run, composition.print_tables),
    "serving": (serving.run, serving.print_tables),
    "ray": (serving_ray.run, serving_ray.print_tables),
    "load": (load.run, load.print_tables),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0].strip("`"))
    parser.add_argument("--quick", action="store_true", help="2 layers, 3 repeats: a smoke run, not for comparison")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="run only rows whose key starts with NAME (repeatable), e.g. engine/bert")
    args = parser.parse_args(argv)
    only: list[str] = args.only or []

    def selected(key: str) -> bool:
        return not only or any(key.startswith(o) for o in only)

    ran = False
    for name, (run, show) in BENCHES.items():
        if only and not any(o.split("/")[0] == name for o in only):
            continue
        ran = True
        results = run(args.quick, selected)
        show(results)
        path = common.write_results(f"{name}-quick" if args.quick else name,
                                    {"machine": common.machine_info(), "only": only, **results})
        print(f"wrote {path}", file=sys.stderr)
    if not ran:
        print(f"--only {' '.join(only)} matches no benchmark (known: {', '.join(BENCHES)})", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
