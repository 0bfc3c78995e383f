"""What the pipeline's CodeBuild steps meet, on loopback: CodeBuild's way of running a buildspec,
and the AWS APIs a canary step calls (CodeBuild, CloudWatch Logs, SSM), as botocore calls them.

* `run_buildspec`: each command in a shell of its own, as CodeBuild runs them (buildspec 0.2): the
  variables and the working directory one command leaves are the next one's, nothing else is (an
  `exit 0` ends its command only, a `set -e` holds for its command only); the phase stops at the
  first command that fails.
* `FakeAws`: one HTTP server on 127.0.0.1 for botocore's `AWS_ENDPOINT_URL`. CodeBuild speaks
  Smithy RPC v2 CBOR (the protocol botocore picks for it first), Logs and SSM JSON 1.1.
* `image_path`: a PATH holding only what the steps' image has (python3, make, sh): whatever else a
  step calls is not found, as in CodeBuild.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from tests.loopback import serving

# What the synth and canary steps' image (public.ecr.aws/docker/library/python:3.11.7-bookworm)
# provides that they call: Python 3.11 with pip, GNU make (the image is built on buildpack-deps),
# and the POSIX shell CodeBuild runs commands in. No AWS CLI, no Node.js.
IMAGE_COMMANDS = ("python3", "make", "sh")
SHELL = shutil.which("sh") or "/bin/sh"


@dataclass
class BuildspecRun:
    code: int
    output: str
    ran: int  # how many commands ran


def run_buildspec(commands: Sequence[str], *, env: Mapping[str, str], cwd: Path, timeout: float = 300) -> BuildspecRun:
    state = cwd.parent / f".{cwd.name}-codebuild-state"
    state.mkdir(exist_ok=True)
    variables, directory = state / "variables.sh", state / "pwd"
    variables.write_text("")
    directory.write_text(f"{cwd}\n")
    output = []
    for index, command in enumerate(commands, 1):
        # Every variable a command sets is carried (set -a), with its directory, whatever ends it.
        script = (
            f'. "{variables}"\n'
            f'read -r directory < "{directory}" && cd "$directory" || exit 97\n'
            f'trap \'status=$?; export -p > "{variables}"; pwd > "{directory}"; exit $status\' EXIT\n'
            "set -a\n"
            f"{command}\n"
        )
        result = subprocess.run([SHELL, "-c", script], cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=timeout, check=False)
        output.append(result.stdout + result.stderr)
        if result.returncode != 0:
            return BuildspecRun(result.returncode, "".join(output), index)
    return BuildspecRun(0, "".join(output), len(commands))


def image_path(directory: Path, *, python: Path, make: Path) -> str:
    """A folder of exactly IMAGE_COMMANDS: `python3` (the given venv's interpreter, standing in for
    the image's: started by its own path, so that it finds its venv, botocore installed), `make` (a
    stand-in) and `sh`."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "python3").write_text(f'#!/bin/sh\nexec "{python}" "$@"\n')
    (directory / "python3").chmod(0o755)
    for name, target in (("make", make), ("sh", Path(SHELL))):
        (directory / name).symlink_to(target)
    assert sorted(p.name for p in directory.iterdir()) == sorted(IMAGE_COMMANDS)
    return str(directory)


# -- CBOR (RFC 8949), the subset Smithy RPC v2 uses ---------------------------------------------


def cbor_encode(value: Any) -> bytes:
    def head(major: int, length: int) -> bytes:
        if length < 24:
            return bytes([major << 5 | length])
        for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
            if length < 1 << (8 * size):
                return bytes([major << 5 | info]) + length.to_bytes(size, "big")
        raise ValueError(length)

    if value is None:
        return b"\xf6"
    if value is True or value is False:
        return b"\xf5" if value else b"\xf4"
    if isinstance(value, int):
        return head(0, value) if value >= 0 else head(1, -1 - value)
    if isinstance(value, float):
        return b"\xfb" + struct.pack(">d", value)
    if isinstance(value, bytes):
        return head(2, len(value)) + value
    if isinstance(value, str):
        data = value.encode()
        return head(3, len(data)) + data
    if isinstance(value, (list, tuple)):
        return head(4, len(value)) + b"".join(cbor_encode(item) for item in value)
    if isinstance(value, dict):
        return head(5, len(value)) + b"".join(cbor_encode(k) + cbor_encode(v) for k, v in value.items())
    raise TypeError(type(value))


def cbor_decode(data: bytes) -> Any:
    position = 0

    def take(size: int) -> bytes:
        nonlocal position
        chunk = data[position : position + size]
        position += size
        return chunk

    def item() -> Any:
        initial = take(1)[0]
        major, info = initial >> 5, initial & 31
        if major == 7:
            simple: dict[int, Any] = {20: False, 21: True, 22: None}
            if info in simple:
                return simple[info]
            size = {25: 2, 26: 4, 27: 8}[info]
            return struct.unpack({2: ">e", 4: ">f", 8: ">d"}[size], take(size))[0]
        if info == 31:  # indefinite length
            items = []
            while data[position] != 0xFF:
                items.append(item())
            take(1)
            if major == 5:
                return dict(zip(items[::2], items[1::2], strict=True))
            return "".join(items) if major == 3 else items
        length = info if info < 24 else int.from_bytes(take({24: 1, 25: 2, 26: 4, 27: 8}[info]), "big")
        if major == 0:
            return length
        if major == 1:
            return -1 - length
        if major == 2:
            return take(length)
        if major == 3:
            return take(length).decode()
        if major == 4:
            return [item() for _ in range(length)]
        if major == 5:
            return {item(): item() for _ in range(length)}
        return item()  # a tag (timestamps): its content

    return item()


# -- the AWS APIs ---------------------------------------------------------------------------------


@dataclass
class FakeAws:
    """The analysis build's answers, and every call made, by operation name."""

    statuses: list[str] = field(default_factory=lambda: ["IN_PROGRESS", "SUCCEEDED"])  # in turn, the last repeated
    verdict: str | None = "promote"
    log_group: str = "/appmesh-eks/Prod-AppMesh-MeshRouting/canary-analysis"
    log_lines: list[str] = field(default_factory=list)
    # GetLogEvents calls answered with ResourceNotFoundException (a stream not yet in CloudWatch).
    log_missing_for: int = 0
    # An operation -> the error it answers: (HTTP status, error type).
    failures: dict[str, tuple[int, str]] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    url: str = ""

    def operations(self) -> list[str]:
        return [name for name, _ in self.calls]

    def answer(self, operation: str, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.calls.append((operation, request))
        if operation in self.failures:
            status, kind = self.failures[operation]
            return status, {"__type": kind, "message": f"{kind} (fake)"}
        if operation == "StartBuild":
            return 200, {"build": {"id": "analysis:build-1", "buildStatus": "IN_PROGRESS"}}
        if operation == "BatchGetBuilds":
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            build: dict[str, Any] = {
                "id": request["ids"][0],
                "buildStatus": status,
                "logs": {"groupName": self.log_group, "streamName": "build-1"},
            }
            if status != "IN_PROGRESS" and self.verdict is not None:
                build["exportedEnvironmentVariables"] = [{"name": "VERDICT", "value": self.verdict}]
            return 200, {"builds": [build], "buildsNotFound": []}
        if operation == "StopBuild":
            return 200, {"build": {"id": request["id"], "buildStatus": "STOPPED"}}
        if operation == "GetLogEvents":
            if self.log_missing_for > 0:
                self.log_missing_for -= 1
                return 400, {"__type": "ResourceNotFoundException", "message": "The specified log stream does not exist."}
            if request.get("nextToken"):  # one page: the second answers no more events
                return 200, {"events": [], "nextForwardToken": request["nextToken"], "nextBackwardToken": "b/0"}
            events = [{"timestamp": 1, "message": line + "\n", "ingestionTime": 2} for line in self.log_lines]
            return 200, {"events": events, "nextForwardToken": "f/1", "nextBackwardToken": "b/0"}
        if operation == "PutParameter":
            self.parameters[request["Name"]] = request["Value"]
            return 200, {"Version": 1, "Tier": "Standard"}
        if operation == "GetParameter":
            if request["Name"] not in self.parameters:
                return 400, {"__type": "ParameterNotFound", "message": ""}
            return 200, {"Parameter": {"Name": request["Name"], "Type": "String", "Value": self.parameters[request["Name"]], "Version": 1}}
        return 400, {"__type": "UnknownOperationException", "message": operation}


@contextmanager
def fake_aws(fake: FakeAws) -> Iterator[FakeAws]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path.startswith("/service/"):  # Smithy RPC v2 CBOR: /service/<name>/operation/<operation>
                request = cbor_decode(body) if body else {}
                status, answer = fake.answer(self.path.rsplit("/", 1)[1], request)
                self._send(status, cbor_encode(answer), {"Content-Type": "application/cbor", "smithy-protocol": "rpc-v2-cbor"})
            else:  # JSON 1.1: X-Amz-Target: <prefix>.<operation>
                status, answer = fake.answer(self.headers["X-Amz-Target"].split(".", 1)[1], json.loads(body or b"{}"))
                self._send(status, json.dumps(answer).encode(), {"Content-Type": "application/x-amz-json-1.1"})

        def _send(self, status: int, data: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(data)), "x-amzn-RequestId": "fake"}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    with serving(Handler) as port:
        fake.url = f"http://127.0.0.1:{port}"
        yield fake


def aws_environment(fake: FakeAws, home: Path) -> dict[str, str]:
    """botocore pointed at the fake, with made-up credentials, no retries (an error is an error
    at once), and nothing read from the machine's own AWS configuration."""
    return {
        "AWS_ENDPOINT_URL": fake.url,
        "AWS_REGION": "us-west-1",
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "fake-secret",
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_RETRY_MODE": "standard",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(home / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials"),
        "HOME": str(home),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
    }
