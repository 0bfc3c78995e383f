"""A mesh-level diff: what a configuration change does to services, routes, weights and the gateway.

`summary.summarize` turns a topology into plain, sorted data (the app writes it to
`cdk.out/mesh-topology.json` on every synth); `diff.diff_summaries` compares two summaries as
lines a reviewer of a canary shift can read; `python -m meshdiff` compares the last synth (or a
saved summary, or another config file) with the current configuration.
"""

from mesh.summary import SUMMARY_FILE, SUMMARY_VERSION, SummaryError, load_summary, summarize, summarize_config, write_summary

from .diff import NO_CHANGES, diff_summaries, has_changes

__all__ = [
    "NO_CHANGES",
    "SUMMARY_FILE",
    "SUMMARY_VERSION",
    "SummaryError",
    "diff_summaries",
    "has_changes",
    "load_summary",
    "summarize",
    "summarize_config",
    "write_summary",
]
