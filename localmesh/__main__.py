"""`python -m localmesh`: the four services behind one Envoy on 127.0.0.1, until Ctrl-C.

python -m localmesh                                   # cdk.json's topology
python -m localmesh -c weights.nodejs=nodejs:1,nodejsv2:1
python -m localmesh --port 9000                       # the gateway's port
python -m localmesh --instances crystal=3             # several processes of a service
python -m localmesh --print-config                    # the two Envoy bootstraps, then exit
python -m localmesh --fault nodejsv2:fail_every=5     # the canary answers 503 to one request in five
python -m localmesh --fault nodejsv2:delay_ms=300 --load 20   # a slow canary, 20 requests/s through the gateway

With a canary in the topology (config/examples/canary.yaml), it prints the `python -m canary`
command that judges it from this Envoy's stats; --load gives it traffic to judge.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.request
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
from localmesh.processes import ServiceError, fault_env  # noqa: E402
from localmesh.runner import EGRESS_MODES, LocalMesh  # noqa: E402


def parse_override(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key.strip(), value


def parse_fault(text: str) -> tuple[str, str, int]:
    """`nodejsv2:fail_every=5` -> ("nodejsv2", "fail_every", 5)."""
    service, colon, setting = text.partition(":")
    name, equals, value = setting.partition("=")
    if not colon or not equals or not service.strip() or not value.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected SERVICE:FAULT=N, e.g. nodejsv2:fail_every=5, got {text!r}")
    return service.strip(), name.strip(), int(value)


def start_load(urls: list[str], rate: float, stop: threading.Event) -> threading.Thread:
    """GET the gateway's routes in turn at `rate` requests per second (one at a time, so a slow
    canary slows the load instead of piling it up), until `stop` is set. Loopback only."""

    def run() -> None:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        interval, index = 1.0 / rate, 0
        next_at = time.monotonic()
        while not stop.is_set():
            try:
                with opener.open(urls[index % len(urls)], timeout=10) as response:
                    response.read()
            except OSError:
                pass  # a 5xx or a timeout is what a faulty canary does; Envoy's stats count it
            index += 1
            next_at += interval
            stop.wait(max(0.0, next_at - time.monotonic()))

    thread = threading.Thread(target=run, name="localmesh-load", daemon=True)
    thread.start()
    return thread


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
    parser.add_argument(
        "--fault",
        metavar="SERVICE:FAULT=N",
        type=parse_fault,
        action="append",
        default=[],
        help="inject a fault into a service: fail_every=N (every Nth request answers 503) or delay_ms=N (repeatable)",
    )
    parser.add_argument(
        "--load", type=float, metavar="RPS", default=0.0, help="send this many requests per second through the gateway's routes (up to 200)"
    )
    parser.add_argument("--envoy-log-level", default="warn")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = dict(args.context)
    try:
        if not 0 <= args.load <= 200:
            raise ValueError(f"--load {args.load:g}: give 0 to 200 requests per second")
        instances = {name: int(count) for name, count in args.instances}
        probe = LocalMesh(overrides, egress_mode=args.egress_mode, instances=instances)
        faults: dict[str, dict[str, int]] = {}
        for service, name, value in args.fault:
            known = [s.name for s in probe.topology.services]
            if service not in known:
                raise ValueError(f"--fault {service}:{name}={value}: no service {service!r}; services: {', '.join(known)}")
            faults.setdefault(service, {})[name] = value
        service_env = {service: fault_env(settings) for service, settings in faults.items()}
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
        service_env=service_env,
        envoy_log_level=args.envoy_log_level,
        log_dir=log_dir,
    )
    stop_load = threading.Event()
    print("starting the local mesh (the first run builds the Crystal service)...", flush=True)
    try:
        mesh.start()
        width = max(len(label) for label, _ in mesh.urls())
        weights = ", ".join(f"{vs}: {targets}" for vs, targets in mesh.topology.weights().items())
        print(f"\nlocal mesh ready; weights {weights}\n")
        for label, url in mesh.urls():
            print(f"  {label:<{width}}  {url}")
        if faults:
            print("faults: " + "; ".join(f"{service} {settings}" for service, settings in faults.items()))
        if mesh.canary_spec_path is not None:
            print(
                "\njudge the canary from this Envoy's stats (over 60 s; --step says which step is live):\n"
                f"  .venv/bin/python -m canary --spec {mesh.canary_spec_path} --envoy-admin {mesh.admin_url} "
                f"--window 60 --record {mesh.weights_dir}"
            )
        if args.load:
            if mesh.topology.gateway is None or not mesh.topology.gateway.routes:
                print("--load: the topology has no gateway route to send to; no load", file=sys.stderr)
            else:
                start_load([mesh.gateway_url + route.prefix for route in mesh.topology.gateway.routes], args.load, stop_load)
                print(f"load: {args.load:g} requests/s through the gateway")
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
        stop_load.set()
        left = mesh.stop()
        if left:
            print(f"still running after SIGKILL: {', '.join(left)}; stop them with kill -9", file=sys.stderr)


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
