"""A smoke test that runs inside the VPC: a CodeBuild project in the private subnets.

The pipeline starts it after each stage (and anyone can with `aws codebuild start-build`); it
fails when a gateway route (the seed's `/eks/`) does not answer or the frontend does not show all
its backends. Why it lives in the application: components/vpc_build.py.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from .vpc_build import vpc_build_project

# curl with retries: NLBs take a few minutes to register targets after a first deploy.
_CURL = "curl -fsS --retry 30 --retry-delay 10 --retry-all-errors --max-time 10"
# The frontend's /json must show every backend answering.
_FRONTEND_CHECK = [
    f'{_CURL} "$FRONTEND_URL/json" | tee /tmp/frontend.json',
    "python3 -c \"import json; d=json.load(open('/tmp/frontend.json')); bad=[n for n,b in d['backends'].items() if not b['ok']]; "
    "assert not bad, 'backends unavailable: ' + ', '.join(bad)\"",
]


def smoke_test_commands(*, gateway_prefixes: list[str], has_frontend: bool) -> list[str]:
    """Every gateway route must answer 200; the frontend, when there is one, must see its backends."""
    commands = [f'{_CURL} "$GATEWAY_URL{prefix}"' for prefix in gateway_prefixes]
    if has_frontend:
        commands += _FRONTEND_CHECK
    return commands or ['echo "nothing is exposed: no gateway routes, no frontend"']


class SmokeTest(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        vpc: ec2.IVpc,
        gateway_url: str | None,
        gateway_prefixes: list[str],
        frontend_url: str | None,
        log_retention_days: int,
    ) -> None:
        super().__init__(scope, id)
        self.project, _ = vpc_build_project(
            self,
            purpose="smoke-test",
            description="Calls the internal gateway's /eks/ and the frontend from inside the VPC",
            key_description="Smoke test build artifacts and logs",
            # Egress only: the project calls the load balancers and pulls its build image.
            group_description="App Mesh smoke test (CodeBuild), egress only",
            vpc=vpc,
            build_spec={
                "version": "0.2",
                "phases": {
                    "build": {"commands": smoke_test_commands(gateway_prefixes=gateway_prefixes, has_frontend=frontend_url is not None)}
                },
            },
            environment_variables={"GATEWAY_URL": gateway_url or "", "FRONTEND_URL": frontend_url or ""},
            log_retention_days=log_retention_days,
            timeout=Duration.minutes(15),
        )
