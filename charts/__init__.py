"""cdk8s charts: pure functions of the topology model -> Kubernetes objects.

App Mesh custom resources are written as plain `ApiObject`s against the CRD schemas of the
pinned controller (tests validate every object against ../shared/schemas), so no code generated
from the CRDs lives here.
"""
