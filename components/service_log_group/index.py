"""The Lambda handler behind `ServiceLogGroup` (components/log_groups.py): a log group that an AWS
service creates under a fixed name exists, with our retention and key, whoever created it.

CloudFormation calls it through the custom-resource provider framework; an exception fails the
resource with its message.
- Create and Update: create the group (with the key) unless it exists ("already exists" is the
  normal case after a destroy, since the service recreates it); otherwise put the key on it;
  then set the retention. Run again with the same properties, it changes nothing.
- Delete: leave the group. The service that writes to it (EKS's control plane, the CloudWatch
  add-on's agents on the nodes) recreates it whenever it is gone, so deleting would only race it;
  its retention stays, so its events still expire. The stack's key goes with the stack, so the
  group is released from it: whatever the service writes after this is encrypted by CloudWatch
  Logs' own key instead of failing on a key pending deletion.
"""

from __future__ import annotations

from typing import Any


def _client() -> Any:
    import boto3  # in the Lambda runtime

    return boto3.client("logs")


def _code(error: Exception) -> str | None:
    """The AWS error code of a botocore ClientError (None for anything else)."""
    response = getattr(error, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None


def on_event(event: dict[str, Any], context: Any, client: Any = None) -> dict[str, Any]:
    properties = event["ResourceProperties"]
    name = properties["LogGroupName"]
    logs = client or _client()
    if event["RequestType"] == "Delete":
        try:
            logs.disassociate_kms_key(logGroupName=name)
        except Exception as error:
            if _code(error) != "ResourceNotFoundException":  # already gone: nothing to release
                raise
        return {"PhysicalResourceId": event.get("PhysicalResourceId", name)}
    try:
        logs.create_log_group(logGroupName=name, kmsKeyId=properties["KmsKeyArn"])
    except Exception as error:
        if _code(error) != "ResourceAlreadyExistsException":
            raise
        # Created by the service (or left by an earlier stack): this stack's key from now on.
        logs.associate_kms_key(logGroupName=name, kmsKeyId=properties["KmsKeyArn"])
    logs.put_retention_policy(logGroupName=name, retentionInDays=int(properties["RetentionInDays"]))
    return {"PhysicalResourceId": name}
