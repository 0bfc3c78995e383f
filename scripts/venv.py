"""Run a script of this folder with the project's venv, whichever `python` started it.

The README writes `python scripts/parity_table.py`; the backends it reads import aws_cdk, which
only the venv (`make synth` creates it) has. A script calls `use_the_venv()` first: from another
Python it re-runs itself with the venv's, or says in one line how to create it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
VENV = PROJECT_ROOT / ".venv"


def use_the_venv() -> None:
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    python = VENV / "bin" / "python"
    if not python.exists():
        print(f"{Path(sys.argv[0]).name}: needs the project's venv ({VENV}); run make synth once to create it", file=sys.stderr)
        sys.exit(2)
    os.execv(python, [str(python), *sys.argv])
