"""`python -m upstream [fetch | seed SHARED_DIR | check]`: the pinned upstream files (see the package)."""

from __future__ import annotations

import sys
from pathlib import Path

import upstream
from upstream import Mismatch, Missing, fetch, part_files, seed, shown


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "fetch"
    try:
        if command == "fetch":
            written = fetch()
            if written:
                print(f"upstream: fetched {len(written)} pinned files into {shown(upstream.CACHE)}")
        elif command == "seed" and len(argv) == 2:
            written = seed(Path(argv[1]))
            print(f"upstream: seeded {len(written)} files into {shown(upstream.CACHE)} from {argv[1]}")
        elif command == "check":
            for artifact in upstream.ARTIFACTS.values():
                part_files(artifact.name)
        else:
            print("usage: python -m upstream [fetch | seed SHARED_DIR | check]", file=sys.stderr)
            return 2
    except (Missing, Mismatch) as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
