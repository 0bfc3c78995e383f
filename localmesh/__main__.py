"""`python -m localmesh`: the four services behind one Envoy on 127.0.0.1, until Ctrl-C.

python -m localmesh                                   # cdk.json's topology
python -m localmesh -c weights.nodejs=nodejs:1,nodejsv2:1
python -m localmesh --port 9000                       # the gateway's port
python -m localmesh --instances crystal=3             # several processes of a service
python -m localmesh --print-config                    # the two Envoy bootstraps, then exit
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import yaml  # noqa: E402

from app import use_venv_node  # noqa: E402

# Before anything starts the jsii kernel (the backends' capability check does): on the venv's real
# Node, not its bin/node wrapper, which prints a Python traceback when Ctrl-C reaches it.
use_venv_node()

from config import ConfigError  # noqa: E402
from localmesh.processes import ServiceError  # noqa: E402
from localmesh.runner import EGRESS_MODES, LocalMesh  # noqa: E402


def parse_override(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key.strip(), value


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m localmesh", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "-c",
        "--context",
        metavar="KEY=VALUE",
        type=parse_override,
        action="append",
        default=[],
        help="a setting, as with `cdk synth -c` (repeatable)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="the ingress gateway's local port (default: the topology's gateway port if free, else any free port; 0: any free port)",
    )
    parser.add_argument(
        "--egress-mode",
        choices=EGRESS_MODES,
        default="proxy",
        help="how the frontend reaches its backends through Envoy (default: proxy, by mesh name)",
    )
    parser.add_argument(
        "--instances",
        metavar="SERVICE=N",
        type=parse_override,
        action="append",
        default=[],
        help="run N processes of a service, each behind its own ingress listener (repeatable)",
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the Envoy bootstraps (outbound, then inbound) as YAML documents and exit"
    )
    parser.add_argument("--envoy-log-level", default="warn")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = dict(args.context)
    try:
        instances = {name: int(count) for name, count in args.instances}
        probe = LocalMesh(overrides, egress_mode=args.egress_mode, instances=instances)
    except (ConfigError, ServiceError, ValueError) as error:
        print(error, file=sys.stderr)
        return 2
    if args.print_config:
        print(yaml.safe_dump_all([probe.envoy_config, probe.inbound_config], sort_keys=False), end="")
        return 0
    gateway_port = args.port or None  # 0: any free port
    if args.port is None and probe.topology.gateway is not None and port_is_free(probe.topology.gateway.port):
        gateway_port = probe.topology.gateway.port

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    log_dir = Path(tempfile.mkdtemp(prefix="localmesh-logs-"))
    mesh = LocalMesh(
        overrides,
        gateway_port=gateway_port,
        egress_mode=args.egress_mode,
        instances=instances,
        envoy_log_level=args.envoy_log_level,
        log_dir=log_dir,
    )
    print("starting the local mesh (the first run builds the Crystal service)...", flush=True)
    try:
        mesh.start()
        width = max(len(label) for label, _ in mesh.urls())
        weights = ", ".join(f"{vs}: {targets}" for vs, targets in mesh.topology.weights().items())
        print(f"\nlocal mesh ready; weights {weights}\n")
        for label, url in mesh.urls():
            print(f"  {label:<{width}}  {url}")
        print(f"\nlogs (JSON lines) in {log_dir}; Ctrl-C stops everything\n", flush=True)
        while True:
            dead = mesh.dead()
            if dead:
                print(f"stopped unexpectedly: {', '.join(dead)}; shutting down", file=sys.stderr)
                return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
        return 0
    except (ServiceError, TimeoutError) as error:
        print(f"local mesh failed to start: {error}", file=sys.stderr)
        return 1
    finally:
        # A second Ctrl-C must not cut the cleanup short and leave processes behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        mesh.stop()


if __name__ == "__main__":
    try:
        code = main()
    except KeyboardInterrupt:  # before the mesh was started: nothing to stop
        print("\nstopped before the local mesh started", file=sys.stderr)
        code = 130
    sys.stdout.flush()
    sys.stderr.flush()
    # Without the interpreter's exit handlers: Ctrl-C also stopped the jsii kernel, and jsii's
    # handler would report that with a traceback. Every process the mesh started is stopped by now.
    os._exit(code)
