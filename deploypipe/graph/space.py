"""The channel space: every channel axis the analysis tracks is a :class:`Dim` of slots,
and a union-find over slots records which channels must be removed together.

A slot is one channel of a tensor's channel axis; it may span ``block`` consecutive
elements of that axis (after ``Flatten``, channel c of a 64x7x7 map spans 49 features).
Linking two dims unions their slots element by element, so a Flatten (block 49) can be
linked to the Conv output (block 1) it came from. After the whole graph is read, each
union-find class is one logical channel, and classes that touch the same dims form a
channel group.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(eq=False)
class Dim:
    """One tracked channel axis: ``n`` slots of ``block`` elements, starting at global slot ``base``."""

    id: int
    base: int
    n: int
    block: int
    origin: str
    reasons: list[str] = field(default_factory=list)

    @property
    def length(self) -> int:
        return self.n * self.block


class ChannelSpace:
    def __init__(self) -> None:
        self.parent: list[int] = []
        self.dims: list[Dim] = []

    def new_dim(self, n: int, block: int = 1, origin: str = "") -> Dim:
        if n <= 0 or block <= 0:
            raise ValueError(f"bad dim n={n} block={block}")
        dim = Dim(len(self.dims), len(self.parent), n, block, origin)
        self.parent.extend(range(dim.base, dim.base + n))
        self.dims.append(dim)
        return dim

    def find(self, x: int) -> int:
        parent = self.parent
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            if ra < rb:
                self.parent[rb] = ra
            else:
                self.parent[ra] = rb

    def link(self, a: Dim, b: Dim, *, a_start: int = 0, b_start: int = 0,
             length: int | None = None) -> None:
        """Element ``a_start + e`` of ``a`` is the same channel as ``b_start + e`` of ``b``."""
        if length is None:
            length = a.length - a_start
        e = 0
        while e < length:
            ea, eb = a_start + e, b_start + e
            self.union(a.base + ea // a.block, b.base + eb // b.block)
            e += min(a.block - ea % a.block, b.block - eb % b.block)

    def link_coarse(self, fine: Dim, coarse: Dim, per: int) -> None:
        """Elements ``[s*per, (s+1)*per)`` of ``fine`` are one channel with slot ``s`` of
        ``coarse`` (a normalisation group, a reshape axis that holds several channels)."""
        for s in range(coarse.n):
            for slot in range(s * per // fine.block, ((s + 1) * per - 1) // fine.block + 1):
                self.union(fine.base + slot, coarse.base + s)

    def tie(self, a: Dim, a_range: tuple[int, int], b: Dim, b_range: tuple[int, int]) -> None:
        """All slots touched by both element ranges become one channel (grouped convs)."""
        slots = [a.base + s for s in range(a_range[0] // a.block, -(-a_range[1] // a.block))]
        slots += [b.base + s for s in range(b_range[0] // b.block, -(-b_range[1] // b.block))]
        for s in slots[1:]:
            self.union(slots[0], s)

    def roots(self) -> list[int]:
        return [self.find(i) for i in range(len(self.parent))]
