"""The one paging scheme of the admin lists: `pageSize` and an opaque `next` token.

`partition_page` (shared.storage) reads a page; this parses the query that asks for one.
"""

from __future__ import annotations

from collections.abc import Callable

from shared.errors import BadRequest


def parse_page_query(
    page_size: str | None,
    next_token: str | None,
    *,
    default: int,
    maximum: int,
    read_next: Callable[[str], str | None],
    what: str,
    next_param: str = "next",
) -> tuple[int, str | None]:
    """`pageSize` (1..`maximum`, `default` when absent) and the `next` token `read_next`
    accepts (None when absent), or `BadRequest` naming every bad parameter.

    `next_param` names the token's parameter in the error (`continuation`, its older name, where
    a caller still sends that).
    """
    errors: dict[str, str] = {}
    size = default
    if page_size:
        if page_size.isdigit() and 1 <= int(page_size) <= maximum:
            size = int(page_size)
        else:
            errors["pageSize"] = f"must be a whole number from 1 to {maximum}"
    after = read_next(next_token) if next_token else None
    if next_token and after is None:
        errors[next_param] = "must be the 'next' of a previous page"
    if errors:
        raise BadRequest(f"Bad query for {what}.", errors=errors)
    return size, after
