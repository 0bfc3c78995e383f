"""Reusable L3 constructs: the first floor that builds AWS resources, above the renderers it uses
(`charts/`, `envoyconfig/`) and below the backends that compose it. Not named `constructs`: a
top-level package of that name would shadow the `constructs` library that aws-cdk-lib imports."""
