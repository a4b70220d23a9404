"""`make bench`: run every bench/bench_*.py's main(), one after the other.

``python -m bench sync tenants`` runs only those; options (``--quick``) are left in ``sys.argv``
for the benches that read them."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def main() -> int:
    only = {arg for arg in sys.argv[1:] if not arg.startswith("-")}
    for path in sorted(Path(__file__).parent.glob("bench_*.py")):
        if only and path.stem.removeprefix("bench_") not in only:
            continue
        print(f"\n== {path.stem} ==", flush=True)
        importlib.import_module(f"bench.{path.stem}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
