"""Search and paging for lists that grow with the country (admin accounts, the regulator's
complaint queue, compliance and institution lists): a bounded page size, page links that keep
every other argument (the search above all), and the total."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, TypeVar

from flask import request, url_for

from .urls import int_arg

PER_PAGE = 50
MAX_PAGE = 1_000_000
T = TypeVar("T")


def page_arg() -> int:
    """``?page=N`` (1 when absent; a bad value is a 400, as everywhere)."""
    return int_arg("page", high=MAX_PAGE) or 1


def search_arg(name: str = "q") -> str:
    return " ".join((request.args.get(name) or "").split())[:100]


@dataclass(frozen=True)
class Pager:
    page: int
    total: int
    per_page: int = PER_PAGE

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def first_item(self) -> int:
        return 0 if self.total == 0 else (self.page - 1) * self.per_page + 1

    @property
    def last_item(self) -> int:
        return min(self.total, self.page * self.per_page)

    def window(self, around: int = 2) -> list[int | None]:
        """Page numbers to link: the first, the last and a few around this one; None is a gap."""
        wanted = {1, self.pages, *range(self.page - around, self.page + around + 1)}
        out: list[int | None] = []
        for n in sorted(p for p in wanted if 1 <= p <= self.pages):
            if out and out[-1] is not None and n - out[-1] > 1:
                out.append(None)
            out.append(n)
        return out

    def url(self, page: int) -> str:
        """This list at ``page``, every other argument kept (never url_for's own ``_``-ones)."""
        view_args = request.view_args or {}
        args = {k: v for k, v in request.args.items() if not k.startswith("_") and k != "page" and k not in view_args}
        if page > 1:
            args["page"] = str(page)
        return url_for(request.endpoint, **view_args, **args)


def paginate(items: Sequence[T], page: int, per_page: int = PER_PAGE) -> tuple[list[T], Pager]:
    """One page of an in-memory list (already filtered and ordered)."""
    pager = Pager(page=1, total=len(items), per_page=per_page)
    pager = Pager(page=min(max(1, page), pager.pages), total=len(items), per_page=per_page)
    start = (pager.page - 1) * per_page
    return list(items[start:start + per_page]), pager


def clamp(page: int, total: int, per_page: int = PER_PAGE) -> Pager:
    pager = Pager(page=1, total=total, per_page=per_page)
    return Pager(page=min(max(1, page), pager.pages), total=total, per_page=per_page)


__all__ = ["PER_PAGE", "Pager", "clamp", "page_arg", "paginate", "search_arg"]
