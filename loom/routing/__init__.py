"""The router: `routes.json`, pipe instances for piped edges, and delivery (SPEC 7).

The supervisor owns a `Router` and calls `reload`, `pump` and `write_stats`; the CLI
changes the table with `add_route` and `remove_route`.
"""

from __future__ import annotations

from loom.routing.edge import DEFAULT_LIMIT, Edge, Leg, legs_of, table_legs
from loom.routing.endpoints import ensure_instance, instances, locate
from loom.routing.graph import check_acyclic, find_cycle
from loom.routing.overview import overview
from loom.routing.router import Router
from loom.routing.table import (
    add_route,
    find_route,
    load_routes,
    remove_route,
    replace_routes,
    routes_lock,
    save_routes,
    validate_edge,
)

__all__ = [
    "DEFAULT_LIMIT",
    "Edge",
    "Leg",
    "Router",
    "add_route",
    "check_acyclic",
    "ensure_instance",
    "find_cycle",
    "find_route",
    "instances",
    "legs_of",
    "load_routes",
    "locate",
    "overview",
    "remove_route",
    "replace_routes",
    "routes_lock",
    "save_routes",
    "table_legs",
    "validate_edge",
]
