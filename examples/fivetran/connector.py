"""An example connector for the Fivetran Connector SDK in the shape of seed 001 (the Virtuous connector): an ID cursor
(`id > last_id`) that survives crashes, page sizes that shrink on errors (TAKE_SIZES), failed queries kept in an `errors`
table, `op.upsert`, `op.delete` and `op.checkpoint` after every page. It runs unchanged under `fivetran debug` and
under tributary (`type = "fivetran"`, see fivetran.toml next to it).

The API is the testkit's REST simulator (`restsim`):
- GET /items/keyset?after_id=ID&limit=N               new items, by id
- GET /items/keyset?updated_since=T&after_id=ID&limit=N items changed since T, by (updated_at, id)
- GET /items/deleted?after=SEQ&limit=N                 the deletion log
"""
from datetime import timedelta, timezone
import json

from fivetran_connector_sdk import Connector, Operations as op, Logging as log

import api

# On an error the same query is asked again with the next, smaller page size (seed 001's TAKE_SIZES).
TAKE_SIZES = [1000, 500, 250, 50, 10, 1]
# The first sync starts reading changes a little before it started, by the API's clock: a write committed late is not missed.
LOOKBACK = timedelta(seconds=5)


def schema(configuration: dict):
    return [
        {
            "table": "items",
            "primary_key": ["id"],
            "columns": {
                "id": "LONG",
                "name": "STRING",
                "amount": {"type": "DECIMAL", "precision": 12, "scale": 2},
                "updated_at": "UTC_DATETIME",
                "version": "INT",
            },
        },
        {
            "table": "errors",
            "primary_key": ["query"],
            "columns": {"query": "STRING", "take": "INT", "error": "STRING"},
        },
    ]


class Fetcher:
    """Asks a query with the largest page size that works, shrinking on errors; every failure is upserted into the
    `errors` table with its query. The size that worked is kept for the rest of the sync."""

    def __init__(self, configuration):
        self.configuration = configuration
        self.size_index = 0

    def get(self, path, params):
        while True:
            take = TAKE_SIZES[self.size_index]
            try:
                return api.get(self.configuration, path, {**params, "limit": take}), take
            except api.ApiError as e:
                query = f"{path}?" + "&".join(f"{k}={v}" for k, v in sorted({**params, "limit": take}.items()))
                op.upsert("errors", {"query": query, "take": take, "error": str(e)})
                if self.size_index == len(TAKE_SIZES) - 1:
                    raise RuntimeError(f"{query} failed at every page size: {e}") from None
                self.size_index += 1
                log.warning(f"{path} failed with {take} rows per page ({e}); trying {TAKE_SIZES[self.size_index]}")


def item_row(item):
    return {
        "id": item["id"],
        "name": item.get("name"),
        "amount": None if item.get("amount") is None else f"{item['amount']:.2f}",
        "updated_at": item["updated_at"],
        "version": item.get("version"),
    }


def sync_deletes(fetcher, state):
    """The deletion log since the last sync. The first sync only moves past it: its ID sweep reads live items only."""
    first_sync = "deletes" not in state
    cursor = state.setdefault("deletes", {"after": 0})
    while True:
        page, _ = fetcher.get("/items/deleted", {"after": cursor["after"]})
        rows = page["data"]
        for row in rows:
            if not first_sync:
                op.delete("items", {"id": row["id"]})
            cursor["after"] = row["seq"]
        if not rows:  # a short page may only mean the API caps its page size
            return
        yield op.checkpoint(state=state)


def sync_new_items(fetcher, state):
    """The ID cursor: `id > last_id`, in id order, checkpointed after every page."""
    cursor = state.setdefault("items", {"last_id": 0, "total_synced": 0})
    while True:
        page, _ = fetcher.get("/items/keyset", {"after_id": cursor["last_id"]})
        rows = page["data"]
        for item in rows:
            op.upsert("items", item_row(item))
            cursor["last_id"] = item["id"]
            cursor["total_synced"] += 1
        if not rows:  # a short page may only mean the API caps its page size
            return
        yield op.checkpoint(state=state)


def sync_changes(fetcher, state, started_at):
    """Items changed since the last sync, by (updated_at, id). The first sync starts this cursor where its ID sweep
    started: everything older was read by that sweep."""
    cursor = state.setdefault("changes", {"updated_since": started_at, "after_id": 0})
    while True:
        page, _ = fetcher.get("/items/keyset", {"updated_since": cursor["updated_since"], "after_id": cursor["after_id"]})
        rows = page["data"]
        for item in rows:
            op.upsert("items", item_row(item))
            cursor["updated_since"], cursor["after_id"] = item["updated_at"], item["id"]
        if not rows:  # a short page may only mean the API caps its page size
            return
        yield op.checkpoint(state=state)


def update(configuration: dict, state: dict):
    log.info(f"sync starts from {json.dumps(state, sort_keys=True)}")
    fetcher = Fetcher(configuration)
    started_at = (api.server_now(configuration) - LOOKBACK).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    yield from sync_deletes(fetcher, state)
    yield from sync_new_items(fetcher, state)
    yield from sync_changes(fetcher, state, started_at)
    log.info(f"synced {state['items']['total_synced']} new items in all")


connector = Connector(update=update, schema=schema)

if __name__ == "__main__":
    # `python connector.py` runs it with the SDK's local tester, as seed 001's workflow does.
    with open("configuration.json", "r") as f:
        connector.debug(configuration=json.load(f))
