"""Print what `make synth` produced: each stack, its resource count and template size."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(outdir: Path) -> int:
    manifest = json.loads((outdir / "manifest.json").read_text())
    rows = []
    for name, artifact in manifest["artifacts"].items():
        if artifact["type"] != "aws:cloudformation:stack":
            continue
        template_path = outdir / artifact["properties"]["templateFile"]
        template = json.loads(template_path.read_text())
        rows.append((name, len(template.get("Resources", {})), template_path.stat().st_size))
    width = max(len(name) for name, _, _ in rows)
    print(f"\n{'stack':<{width}}  resources  template")
    for name, resources, size in rows:
        print(f"{name:<{width}}  {resources:>9}  {size / 1024:>6.1f} KiB")
    print(f"\n{len(rows)} stacks, {sum(r for _, r, _ in rows)} resources; templates in {outdir.resolve()}/")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "cdk.out")))
