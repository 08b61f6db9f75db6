"""After a full round: mark every live row this run did not stamp as deleted (users, groups,
memberships). The query pages through the rows with a server-side filter, so memory holds at
most `SWEEP_BUFFER` operations, submitted per partition (a transaction spans one partition)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Final

from azure.data.tables.aio import TableClient

from shared.storage import (
    TRANSACTION_LIMIT,
    TRANSACTIONS_IN_FLIGHT,
    TableOperation,
    Transactions,
    translate_errors,
)

SWEEP_BUFFER: Final = TRANSACTION_LIMIT * TRANSACTIONS_IN_FLIGHT


async def mark_unseen_deleted(
    table: TableClient,
    unseen: str,
    parameters: Mapping[str, Any],
    tombstone: Callable[[Mapping[str, Any]], TableOperation],
    transactions: Transactions,
) -> int:
    """Write `tombstone(row)` for each row the filter `unseen` finds; how many were marked."""
    rows = table.query_entities(
        unseen,
        parameters=dict(parameters),
        select=["PartitionKey", "RowKey"],
        results_per_page=1000,
    )
    by_partition: dict[str, list[TableOperation]] = {}
    buffered = marked = 0
    async with translate_errors():
        async for row in rows:
            by_partition.setdefault(row["PartitionKey"], []).append(tombstone(row))
            buffered += 1
            if buffered == SWEEP_BUFFER:
                await _submit(table, by_partition, transactions)
                marked += buffered
                by_partition, buffered = {}, 0
    await _submit(table, by_partition, transactions)
    return marked + buffered


async def _submit(
    table: TableClient,
    by_partition: Mapping[str, list[TableOperation]],
    transactions: Transactions,
) -> None:
    await asyncio.gather(*(transactions.submit(table, ops) for ops in by_partition.values()))
