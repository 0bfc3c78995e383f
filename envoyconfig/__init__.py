"""Envoy configuration rendered from the topology: a pure renderer beside `charts/`.

`render` turns the typed topology into Envoy v3 bootstraps. Two users, neither of which owns it:
the VPC Lattice backend deploys its edge gateway with `render_edge_gateway`, and the local mesh
(`localmesh/`) runs every service behind Envoys configured by `render_envoy_config` and
`render_inbound_config`. It imports only `config/`; nothing here opens a socket or a file.
"""
