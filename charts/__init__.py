"""cdk8s charts: pure functions of the topology model -> Kubernetes objects.

A renderer, on the floor above the neutral mesh model (`mesh/`), beside `envoyconfig/`: it imports
`config/` and `mesh/` (and cdk8s), never a construct, a backend or aws_cdk.

App Mesh custom resources are written as plain `ApiObject`s against the CRD schemas of the
pinned controller (tests validate every object against ../shared/schemas), so no code generated
from the CRDs lives here.
"""
