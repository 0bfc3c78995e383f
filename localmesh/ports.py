"""Local ports for every process and listener of the local mesh (the renderer takes them as data)."""

from __future__ import annotations

from collections.abc import Mapping

from config.topology import Topology
from envoyconfig.render import LocalPorts, egress_client
from localmesh.processes import free_port


def allocate_ports(topology: Topology, gateway_port: int | None = None, instances: Mapping[str, int] | None = None) -> LocalPorts:
    """Free local ports for every process and listener; `gateway_port` pins the gateway's.

    instances: how many processes a service runs (default 1 each), each with its ingress listener.
    Ports are unique within the result (the kernel could hand a just-released port out twice).
    """
    taken: set[int] = set() if gateway_port is None else {gateway_port}
    counts = {service.name: max(1, int((instances or {}).get(service.name, 1))) for service in topology.services}

    def pick() -> int:
        for _ in range(100):
            port = free_port()
            if port not in taken:
                taken.add(port)
                return port
        raise RuntimeError("could not find a free local port")

    client = egress_client(topology)
    processes = {name: tuple(pick() for _ in range(count)) for name, count in counts.items()}
    return LocalPorts(
        services={name: ports[0] for name, ports in processes.items()},
        egress=pick(),
        admin=pick(),
        gateway=None if topology.gateway is None else (gateway_port if gateway_port is not None else pick()),
        upstreams={backend: pick() for backend in (client.backends if client else ())},
        instances=processes,
        inbound={name: tuple(pick() for _ in range(count)) for name, count in counts.items()},
        inbound_admin=pick(),
    )
