"""A smoke test that runs inside the VPC: a CodeBuild project in the private subnets.

The pipeline starts it after each stage (and anyone can with `aws codebuild start-build`); it
fails when a gateway route (the seed's `/eks/`) does not answer or the frontend does not show all
its backends. It lives in the application, not in the pipeline stack, because only the application
knows its VPC: a pipeline step cannot reference a stage's resources at synth time.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from constructs import Construct

from .log_groups import log_group
from .nag import acknowledge, checkov_skip, codebuild_project_findings

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
        key = kms.Key(
            self, "Key", enable_key_rotation=True, removal_policy=RemovalPolicy.DESTROY, description="Smoke test build artifacts and logs"
        )
        logs_group = log_group(self, "Logs", days=log_retention_days)
        # Egress only: the project calls the load balancers and pulls its build image.
        security_group = ec2.SecurityGroup(self, "SecurityGroup", vpc=vpc, description="App Mesh smoke test (CodeBuild), egress only")
        self.project = codebuild.Project(
            self,
            "Project",
            # A fixed name, so the pipeline may start exactly this project and no other.
            project_name=f"{Stack.of(self).stack_name}-smoke-test",
            security_groups=[security_group],
            description="Calls the internal gateway's /eks/ and the frontend from inside the VPC",
            vpc=vpc,
            subnet_selection=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            encryption_key=key,
            timeout=Duration.minutes(15),
            environment=codebuild.BuildEnvironment(build_image=codebuild.LinuxBuildImage.STANDARD_7_0),
            environment_variables={
                "GATEWAY_URL": codebuild.BuildEnvironmentVariable(value=gateway_url or ""),
                "FRONTEND_URL": codebuild.BuildEnvironmentVariable(value=frontend_url or ""),
            },
            logging=codebuild.LoggingOptions(cloud_watch=codebuild.CloudWatchLoggingOptions(log_group=logs_group)),
            build_spec=codebuild.BuildSpec.from_object(
                {
                    "version": "0.2",
                    "phases": {
                        "build": {"commands": smoke_test_commands(gateway_prefixes=gateway_prefixes, has_frontend=frontend_url is not None)}
                    },
                }
            ),
        )
        document = self.project.node.try_find_child("PolicyDocument")
        assert document is not None
        checkov_skip(
            document,
            {"CKV_AWS_111": "CodeBuild's own ENI management in the VPC (ec2:CreateNetworkInterface and friends), which EC2 cannot scope"},
        )
        stack = Stack.of(self)
        project_name = self.project.project_name
        acknowledge(
            self.project,
            "Grants aws-codebuild writes for every project: managing its ENIs in the VPC (EC2 "
            "supports no narrower resource for CreateNetworkInterface and friends), its default log "
            "group and report groups (named after the project, with run-time suffixes), and the "
            "KMS data-key actions for its own key.",
            "IAM5[Resource::*]",
            "IAM5[Resource::arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:network-interface/*]",
            *codebuild_project_findings(stack, project_name),
            "IAM5[Action::kms:GenerateDataKey*]",
            "IAM5[Action::kms:ReEncrypt*]",
        )
