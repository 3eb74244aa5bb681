"""Parameter renames between checkpoint layouts: one table of prefix pairs, read both ways.

Each format's naming differs from another's by module paths (``ec_texture_3.`` vs
``texture_encoder.2.``); a table of such prefix pairs gives the rename in one direction and,
swapped, the rename back, so the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from ctsdg.errors import InputError

Network = Literal["generator", "discriminator"]
NETWORKS: tuple[Network, ...] = ("generator", "discriminator")


def check_network(network: str) -> None:
    if network not in NETWORKS:
        raise InputError(f"unknown network {network!r}: expected 'generator' or 'discriminator'")


def _lookup(table: dict[str, str], name: str) -> str | None:
    """Rename by the longest key that is ``name`` itself or a prefix ending at a dot."""
    if name in table:
        return table[name]
    end = len(name)
    while (end := name.rfind(".", 0, end)) >= 0:
        prefix = name[: end + 1]
        if prefix in table:
            return table[prefix] + name[end + 1 :]
    return None


class PrefixRenames:
    """A one-to-one table of ``(left, right)`` name prefixes (ending in ``.``) or full names."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._forward = dict(pairs)
        self._backward = {right: left for left, right in self._forward.items()}
        if len(self._backward) != len(self._forward):
            raise ValueError("rename table is not one-to-one")

    def forward(self, name: str) -> str | None:
        """The right-hand name of a left-hand one, or None when no pair covers it."""
        return _lookup(self._forward, name)

    def backward(self, name: str) -> str | None:
        """The left-hand name of a right-hand one, or None when no pair covers it."""
        return _lookup(self._backward, name)
