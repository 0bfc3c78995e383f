"""What `cdk synth` builds from a config: the pipeline (when configured) or the application."""

from __future__ import annotations

import aws_cdk as cdk

from config.settings import AppConfig

from .application import Application, build_application
from .pipeline import PipelineStack


def build_app(app: cdk.App, config: AppConfig, *, synth_context: dict[str, str]) -> Application | PipelineStack:
    """`synth_context`: the settings that differ from cdk.json, replayed by the pipeline's synth."""
    for warning in config.acknowledged_warnings:
        # The id synth prints after "Acknowledge with 'Annotation::...'".
        cdk.Validations.of(app).acknowledge(
            cdk.Acknowledgment(id=f"Annotation::{warning}", reason="acknowledged in configuration (acknowledge_warnings)")
        )
    if config.pipeline:
        return PipelineStack(
            app,
            f"{config.stack_prefix}-Pipeline",
            config=config,
            pipeline=config.pipeline,
            synth_context=synth_context,
            env=cdk.Environment(account=config.account, region=config.region),
            description="App Mesh on EKS: CDK Pipelines promotion of the application",
        )
    return build_application(app, config)
