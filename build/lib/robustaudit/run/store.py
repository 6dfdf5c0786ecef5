"""The result store: one SQLite file per run (WAL, one transaction per finished shard), so a crash loses at most
the shards in flight, and a rerun skips the finished ones. The run's configuration is stored with it."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustaudit.errors import InputError
from robustaudit.results import EvalRecord

STORE_NAME = "store.sqlite"


class Store:
    """Finished shards of one evaluation, keyed by shard index."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a committed shard survives power loss
        with self._db:
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS shards (shard INTEGER PRIMARY KEY, record TEXT NOT NULL, "
                             "x_adv BLOB NOT NULL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS spent (shard INTEGER PRIMARY KEY, queries TEXT NOT NULL)")

    def close(self) -> None:
        self._db.close()

    def bind(self, config: dict[str, Any]) -> None:
        """Store the run's configuration, or check it equals the stored one (a resume must not mix runs)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()
        text = json.dumps(config, sort_keys=True)
        if row is None:
            with self._db:
                self._db.execute("INSERT INTO meta VALUES ('config', ?)", (text,))
            return
        old = json.loads(row[0])
        if old != json.loads(text):
            diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
            raise InputError(f"{self.path} holds a run with a different configuration ({', '.join(diff)} differ); "
                             "resume with the same options, or write to another --out folder")

    def done(self) -> set[int]:
        return {r[0] for r in self._db.execute("SELECT shard FROM shards")}

    def journal(self, shard: int, queries: torch.Tensor) -> None:
        """Record what each example of an unfinished shard has spent so far (a resumed run continues from it, so
        a budget holds across interruptions and every answered query is reported)."""
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO spent VALUES (?, ?)", (shard, json.dumps(queries.tolist())))

    def journaled(self, shard: int, n: int) -> torch.Tensor | None:
        """The queries an interrupted attempt at `shard` spent per example, if any (checked against its size)."""
        row = self._db.execute("SELECT queries FROM spent WHERE shard = ?", (shard,)).fetchone()
        if row is None:
            return None
        values = json.loads(row[0])
        if not isinstance(values, list) or len(values) != n or not all(isinstance(v, int) and v >= 0 for v in values):
            raise InputError(f"{self.path}: the spent-queries journal of shard {shard} is damaged; start a new run "
                             "in another --out folder")
        return torch.tensor(values, dtype=torch.long)

    def put(self, shard: int, record: EvalRecord) -> None:
        """Commit one finished shard, atomically (its journal goes with it)."""
        buf = io.BytesIO()
        np.save(buf, record.x_adv.numpy(), allow_pickle=False)
        state = record.to_json()
        state["attacks"] = [{**a.to_json(), "raw": a.raw} for a in record.attacks]
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO shards VALUES (?, ?, ?)", (shard, json.dumps(state),
                                                                                buf.getvalue()))
            self._db.execute("DELETE FROM spent WHERE shard = ?", (shard,))

    def get(self, shard: int) -> EvalRecord:
        row = self._db.execute("SELECT record, x_adv FROM shards WHERE shard = ?", (shard,)).fetchone()
        if row is None:
            raise KeyError(shard)
        try:
            return EvalRecord.from_json(json.loads(row[0]),
                                        torch.from_numpy(np.load(io.BytesIO(row[1]), allow_pickle=False)))
        except (ValueError, KeyError, TypeError, OSError) as e:
            raise InputError(f"{self.path}: the record of shard {shard} is damaged ({type(e).__name__}); start a new "
                             "run in another --out folder") from None
