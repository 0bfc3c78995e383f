"""The preflight's Lambda handler: one call to the mesh's API, before anything else is deployed.

CloudFormation calls it through the custom-resource provider framework; an exception fails the
resource with its message, and with it the whole `cdk deploy --all`, before any other stack.
"""

from __future__ import annotations

import os
from typing import Any


def _client(service: str) -> Any:
    import boto3  # in the Lambda runtime
    from botocore.config import Config

    # A dead endpoint must fail fast: the whole point is to stop within a minute.
    return boto3.client(service, config=Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 2}))


def on_event(event: dict[str, Any], context: Any, client: Any = None) -> dict[str, Any]:
    if event["RequestType"] == "Delete":
        return {"PhysicalResourceId": event.get("PhysicalResourceId", "preflight")}
    service, action, message = os.environ["SERVICE"], os.environ["ACTION"], os.environ["MESSAGE"]
    try:
        getattr(client or _client(service), action)(**{"limit": 1})
    except Exception as error:  # whatever AWS says: an error, a refusal, an endpoint that is gone
        raise RuntimeError(f"{message} (AWS answered: {type(error).__name__}: {error})") from None
    return {"PhysicalResourceId": f"preflight-{service}", "Data": {"Answered": "true"}}
