"""CloudWatch Logs retention from a validated number of days."""

from __future__ import annotations

from aws_cdk import aws_logs as logs

from config.settings import LOG_RETENTION_DAYS


def retention(days: int) -> logs.RetentionDays:
    # RetentionDays lists the finite periods in the same ascending order as CloudWatch's
    # accepted values (LOG_RETENTION_DAYS); jsii exposes only the member names, not the days.
    return list(logs.RetentionDays)[LOG_RETENTION_DAYS.index(days)]
