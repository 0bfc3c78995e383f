"""The neutral mesh model: what every renderer and backend shares, and no mesh's own words.

One floor above `config/` (settings and the topology) and below the renderers (`charts/`,
`envoyconfig/`), which import it and nothing above it:

* `names`: the names every backend's objects share (mesh, namespace, the workshop names) and the
  plain form of a Kubernetes object (`Manifest`);
* `parts`: what a backend adds to one service's manifest (`ServiceParts`) and what its injector
  adds to a pod (`Injection`);
* `capabilities`: the features a topology can use, and each backend's table of how it expresses them;
* `parity`: the neutral form a backend's objects are read back into (the round-trip parity test);
* `summary`: the mesh summary synth writes (`cdk.out/mesh-topology.json`), which `meshdiff` reads.

Pure: nothing here imports aws_cdk, cdk8s or a backend.
"""
