"""The canary analysis, inside the VPC: `python -m canary` against the mesh's metrics workspace.

A CodeBuild project in the private subnets, started by the pipeline after each canary step (with
STEP set), or by anyone with `aws codebuild start-build --project-name <stack>-canary-analysis
--environment-variables-override name=STEP,value=2,type=PLAINTEXT` (add
`name=SETTLE_SECONDS,value=0,type=PLAINTEXT` to judge at once: by default it first waits a window and
the scrape margin, so that the window holds only the step's traffic). Its source is the `canary/`
folder alone (an S3 asset: the tool imports nothing else of the project), its role may only read
the one Amazon Managed Service for Prometheus workspace it queries, and it exports one variable,
VERDICT (promote, wait, roll back, or error), having printed the figures behind it. The build itself
succeeds whatever the verdict: acting on it (a roll back) is the pipeline's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from .nag import acknowledge
from .vpc_build import vpc_build_project

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TOOL = PROJECT_ROOT / "canary"
PURPOSE = "canary-analysis"
# Read-only queries of one workspace (AMP's actions for the Prometheus query API).
QUERY_ACTIONS = ["aps:QueryMetrics", "aps:GetLabels", "aps:GetSeries", "aps:GetMetricMetadata"]


def analysis_commands() -> list[str]:
    """Judge step $STEP, $SETTLE_SECONDS after its deploy (a window of the step's own traffic),
    waiting up to $MAX_WAITS windows more for enough requests; export VERDICT. CodeBuild runs each
    command in a shell of its own but carries the variables and the directory one leaves to the
    next (buildspec 0.2): `set -e` or an `exit` reach no further than their command."""
    return [
        'TOOL="$HOME/tool" && mkdir -p "$TOOL/canary" && cp -R "$CODEBUILD_SRC_DIR"/. "$TOOL/canary/"',
        'python3 -m pip install --quiet --disable-pip-version-check -r "$TOOL/canary/requirements.txt"',
        'printf \'%s\' "$CANARY_SPEC" > "$TOOL/spec.json"',
        'cd "$TOOL" && set +e; python3 -m canary --spec spec.json --prometheus "$PROMETHEUS_URL" --region "$AWS_REGION" '
        '--step "$STEP" --settle "$SETTLE_SECONDS" --max-waits "$MAX_WAITS" --write-json judgement.json; CODE=$?; set -e',
        # 0/3/4 are verdicts; anything else is an error the pipeline must not read as a promotion.
        'case "$CODE" in 0) VERDICT=promote;; 3) VERDICT=wait;; 4) VERDICT="roll back";; *) VERDICT=error;; esac',
        'echo "canary verdict for step $STEP: $VERDICT"',
    ]


class CanaryAnalysis(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        vpc: ec2.IVpc,
        spec: Mapping[str, Any],
        workspace_arn: str,
        prometheus_url: str,
        settle_seconds: int,
        max_waits: int,
        timeout_minutes: int,
        log_retention_days: int,
    ) -> None:
        """`timeout_minutes`: config.canary.Canary.analysis_timeout_minutes (the settle, the
        waits, and the setup around them)."""
        super().__init__(scope, id)
        tool = s3_assets.Asset(self, "Tool", path=str(TOOL), exclude=["__pycache__", "*.pyc"])
        timeout = Duration.minutes(timeout_minutes)
        self.log_group_name = f"/appmesh-eks/{Stack.of(self).stack_name}/{PURPOSE}"
        self.project, self.log_group = vpc_build_project(
            self,
            purpose=PURPOSE,
            description="Judges a canary step from the mesh's request metrics (python -m canary) from inside the VPC",
            key_description="Canary analysis build artifacts and logs",
            group_description="Canary analysis (CodeBuild), egress only",
            vpc=vpc,
            source=codebuild.Source.s3(bucket=tool.bucket, path=tool.s3_object_key),
            build_spec={
                "version": "0.2",
                "env": {"exported-variables": ["VERDICT"]},
                "phases": {"build": {"commands": analysis_commands()}},
            },
            environment_variables={
                "CANARY_SPEC": json.dumps(dict(spec), sort_keys=True),
                "PROMETHEUS_URL": prometheus_url,
                "STEP": "1",
                "SETTLE_SECONDS": str(settle_seconds),
                "MAX_WAITS": str(max_waits),
            },
            log_retention_days=log_retention_days,
            timeout=timeout,
            # A name the pipeline's step can read the figures from (ours: no AWS service makes it).
            log_group_name=self.log_group_name,
        )
        self.project.add_to_role_policy(iam.PolicyStatement(actions=QUERY_ACTIONS, resources=[workspace_arn]))
        acknowledge(
            self.project,
            "CodeBuild's S3 source: read access to the asset object, which the CDK's grant writes with a key wildcard.",
            "IAM5[Action::s3:GetObject*]",
            "IAM5[Action::s3:GetBucket*]",
            "IAM5[Action::s3:List*]",
        )
