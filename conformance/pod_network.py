"""The first process of a pod's network namespace: it gives the namespace the pod's loopback, carries
a few ports across its boundary over Unix sockets, and runs the pod's program.

    python conformance/pod_network.py [--address 10.244.0.7] [--forward tcp:127.0.0.1:15012=unix:/x.sock ...]
                                      [-- program arguments...]

It is started in a network namespace of its own (conformance/proxies.py: `unshare(CLONE_NEWNET)`
before exec), whose only interface is its own loopback: Istio's Envoy binds 0.0.0.0, and there
that is the namespace's loopback and nothing else. The namespace has no process but this one and
its child, so it disappears with them: nothing is left to clean up, whatever happens to the run.

Each `--forward LISTEN=CONNECT` listens on one side and connects on the other, byte for byte:
`tcp:127.0.0.1:PORT=unix:PATH` brings a host service into the namespace (istiod's xDS port, whose
Unix socket the harness serves on the host); `unix:PATH=tcp:127.0.0.1:PORT` lets the host reach a
port inside (Envoy's admin). With no `--address` and no program, and started without a namespace,
the same forwarders bridge on the host side (and the host's interfaces are left alone).

Standard library only, run by path: it must start without the project on sys.path (the program's
environment is the pod's, and its working directory the pod's).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1
PROGRAM_STOP_TIMEOUT_S = 20  # the agent drains Envoy (terminationDrainDuration, 5 s) before it exits


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _endpoint(text: str) -> tuple[str, str, int]:
    kind, _, rest = text.partition(":")
    if kind == "unix":
        return kind, rest, 0
    host, _, port = rest.rpartition(":")
    if kind != "tcp" or not host.startswith("127."):
        raise SystemExit(f"pod_network: {text}: only unix:PATH and tcp:127.x.x.x:PORT (loopback) are allowed")
    return kind, host, int(port)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()


async def _forward(listen: str, connect: str) -> asyncio.AbstractServer:
    target_kind, target, target_port = _endpoint(connect)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if target_kind == "unix":
                upstream_reader, upstream_writer = await asyncio.open_unix_connection(target)
            else:
                upstream_reader, upstream_writer = await asyncio.open_connection(target, target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    kind, where, port = _endpoint(listen)
    if kind == "unix":
        with contextlib.suppress(FileNotFoundError):
            os.unlink(where)
        return await asyncio.start_unix_server(handle, path=where)
    return await asyncio.start_server(handle, where, port)


def _loopback(address: str) -> None:
    """The namespace's loopback up, with the pod's address on it (what istiod and the proxy's
    inbound listeners know the pod by)."""
    for command in (["ip", "link", "set", "lo", "up"], ["ip", "address", "add", f"{address}/32", "dev", "lo"]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        if result.returncode != 0:
            raise SystemExit(f"pod_network: {' '.join(command)} failed: {result.stderr.strip()}")


async def _main(arguments: argparse.Namespace) -> int:
    if arguments.address:  # a pod's namespace (the host-side bridge has none)
        _loopback(arguments.address)
    servers = [await _forward(*pair.split("=", 1)) for pair in arguments.forward]
    # The forwarders listen before the program starts: its first call (the agent's certificate
    # request to istiod) finds them.
    print("pod_network: ready", flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stopping.set)
    code = 0
    if arguments.program:
        program = await asyncio.create_subprocess_exec(*arguments.program, preexec_fn=_die_with_parent)
        waiting = asyncio.ensure_future(program.wait())
        await asyncio.wait([waiting, asyncio.ensure_future(stopping.wait())], return_when=asyncio.FIRST_COMPLETED)
        if program.returncode is None:
            program.terminate()
            try:
                await asyncio.wait_for(waiting, PROGRAM_STOP_TIMEOUT_S)
            except TimeoutError:
                program.kill()
                await waiting
        code = program.returncode or 0
    else:
        await stopping.wait()
    for server in servers:
        server.close()
    return code


def main(argv: list[str]) -> int:
    program: list[str] = []
    if "--" in argv:
        program = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    parser = argparse.ArgumentParser(prog="pod_network.py")
    parser.add_argument("--address")
    parser.add_argument("--forward", action="append", default=[], metavar="LISTEN=CONNECT")
    arguments = parser.parse_args(argv)
    arguments.program = program
    return asyncio.run(_main(arguments))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
