"""Metric-gated canary analysis: one step of a canary judged from the mesh's own request metrics.

`python -m canary` (see __main__) compares the candidate version with the baseline over a window
and prints one verdict, promote, wait or roll back, with the figures behind it. The pipeline runs
it after each canary step (in the VPC, against the Amazon Managed Prometheus workspace Istio's
metrics land in), and `make local` users point it at the local mesh's Envoys.

Apart from the app: it imports nothing of the project and only the standard library (botocore to
sign Amazon Managed Prometheus queries), so the pipeline ships this folder alone. What it judges
comes in a spec file the app renders from the topology (mesh/canary.py).
"""
