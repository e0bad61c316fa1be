"""The SQLite store's schema and queries: named constants, bound parameters only."""

from __future__ import annotations

import re

from .base import DEAD, LEASED, READY, SCHEDULED

SCHEMA_VERSION = 1

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS gorelay_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS gorelay_queues (
    name TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    message_ttl REAL,
    expires REAL,
    last_used REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS gorelay_messages (
    id INTEGER PRIMARY KEY,
    queue TEXT NOT NULL,
    lane INTEGER NOT NULL,
    state INTEGER NOT NULL,
    visible_at REAL NOT NULL,
    owner TEXT,
    deliveries INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    dead_reason TEXT,
    expires_at REAL,
    payload BLOB NOT NULL
);
-- (queue, state, lane, id): ready heads in service order, sizes and purges.
CREATE INDEX IF NOT EXISTS gorelay_messages_queue
    ON gorelay_messages (queue, state, lane, id);
CREATE INDEX IF NOT EXISTS gorelay_messages_timed
    ON gorelay_messages (visible_at) WHERE state IN ({SCHEDULED}, {LEASED});
CREATE INDEX IF NOT EXISTS gorelay_messages_expiring
    ON gorelay_messages (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS gorelay_exchanges (
    name TEXT PRIMARY KEY,
    type TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS gorelay_bindings (
    exchange TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    pattern TEXT,
    queue TEXT NOT NULL,
    PRIMARY KEY (exchange, routing_key, queue)
);
CREATE INDEX IF NOT EXISTS gorelay_bindings_queue ON gorelay_bindings (queue);
CREATE TABLE IF NOT EXISTS gorelay_kv (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    expires_at REAL
);
CREATE INDEX IF NOT EXISTS gorelay_kv_expiring
    ON gorelay_kv (expires_at) WHERE expires_at IS NOT NULL;
"""

#: names of the tables and indexes SCHEMA creates
SCHEMA_OBJECTS = frozenset(re.findall(r"CREATE (?:TABLE|INDEX) IF NOT EXISTS (\w+)", SCHEMA))
SQL_SCHEMA_OBJECTS = "SELECT name FROM sqlite_master WHERE type IN ('table', 'index')"
SQL_GET_VERSION = "SELECT value FROM gorelay_meta WHERE key = 'schema_version'"
SQL_SET_VERSION = "INSERT OR REPLACE INTO gorelay_meta (key, value) VALUES ('schema_version', ?)"
SQL_DECLARE_QUEUE = (
    "INSERT OR IGNORE INTO gorelay_queues (name, created_at, message_ttl, expires, last_used)"
    " VALUES (?, ?, ?, ?, ?)"
)
SQL_TOUCH_QUEUE = "UPDATE gorelay_queues SET last_used = ? WHERE name = ? AND expires IS NOT NULL"
SQL_IDLE_QUEUES = (
    "SELECT name FROM gorelay_queues WHERE expires IS NOT NULL AND last_used + expires <= ?"
)
SQL_HAS_QUEUE = "SELECT 1 FROM gorelay_queues WHERE name = ?"
SQL_DELETE_QUEUE = "DELETE FROM gorelay_queues WHERE name = ?"
SQL_DELETE_QUEUE_MESSAGES = "DELETE FROM gorelay_messages WHERE queue = ?"
SQL_DELETE_QUEUE_BINDINGS = "DELETE FROM gorelay_bindings WHERE queue = ?"
# expires_at: the earlier of the message's own expiry and now + the queue's message TTL.
SQL_PUT = (
    "INSERT INTO gorelay_messages"
    " (queue, lane, state, visible_at, created_at, payload, expires_at)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, (SELECT CASE"
    "   WHEN q.message_ttl IS NULL THEN ?7"
    "   WHEN ?7 IS NULL THEN ?5 + q.message_ttl"
    "   ELSE min(?7, ?5 + q.message_ttl) END"
    "  FROM (SELECT (SELECT message_ttl FROM gorelay_queues WHERE name = ?1) AS message_ttl) q))"
)
# Direct routing and the insert in one statement (every Celery task publish):
# one row per queue bound to exchange ?1 with routing key ?2, in queue order;
# the expiry rule is SQL_PUT's.  The bindings are the committed ones, never a copy.
_PUT_ROUTED = (
    "INSERT INTO gorelay_messages"
    " (queue, lane, state, visible_at, created_at, payload, expires_at)"
    " SELECT b.queue, ?3, ?4, ?5, ?6, ?7, CASE"
    "   WHEN q.message_ttl IS NULL THEN {expires}"
    "   WHEN {expires} IS NULL THEN ?6 + q.message_ttl"
    "   ELSE min({expires}, ?6 + q.message_ttl) END"
    " FROM gorelay_bindings b LEFT JOIN gorelay_queues q ON q.name = b.queue"
    " WHERE b.exchange = ?1 AND b.routing_key = ?2 ORDER BY b.queue"
)
SQL_PUT_ROUTED = _PUT_ROUTED.format(expires="?8")
#: the same for a message without its own expiry (binding no None is cheaper)
SQL_PUT_ROUTED_NO_EXPIRY = _PUT_ROUTED.format(expires="NULL")
SQL_ANY_READY = f"SELECT 1 FROM gorelay_messages WHERE state = {READY} AND queue = ? LIMIT 1"
SQL_ANY_DUE = (
    f"SELECT 1 FROM gorelay_messages WHERE state IN ({SCHEDULED}, {LEASED})"
    " AND visible_at <= ? LIMIT 1"
)
SQL_ANY_EXPIRED = "SELECT 1 FROM gorelay_messages WHERE expires_at <= ? LIMIT 1"
SQL_DROP_EXPIRED = (
    f"DELETE FROM gorelay_messages WHERE expires_at <= ? AND state IN ({READY}, {SCHEDULED})"
)
SQL_RESTORE_DUE = (
    f"UPDATE gorelay_messages SET state = {READY}, owner = NULL"
    f" WHERE state IN ({SCHEDULED}, {LEASED}) AND visible_at <= ?"
)
SQL_READY_HEAD = (
    f"SELECT id, lane FROM gorelay_messages WHERE state = {READY} AND queue = ?"
    " ORDER BY lane, id LIMIT ?"
)
SQL_LEASE_HEAD = (
    f"UPDATE gorelay_messages SET state = {LEASED}, visible_at = ?, owner = ?,"
    " deliveries = deliveries + 1"
    " WHERE id IN (SELECT id FROM gorelay_messages"
    f"             WHERE state = {READY} AND queue = ? ORDER BY lane, id LIMIT ?)"
    " RETURNING id, queue, lane, payload, deliveries"
)
SQL_LEASE_ONE = (
    f"UPDATE gorelay_messages SET state = {LEASED}, visible_at = ?, owner = ?,"
    f" deliveries = deliveries + 1 WHERE id = ? AND state = {READY}"
    " RETURNING id, queue, lane, payload, deliveries"
)
SQL_ACK = "DELETE FROM gorelay_messages WHERE id = ?"
SQL_RELEASE = (
    f"UPDATE gorelay_messages SET state = {READY}, owner = NULL, visible_at = ?"
    f" WHERE id = ? AND owner = ? AND state = {LEASED}"
)
SQL_RENEW = (
    f"UPDATE gorelay_messages SET visible_at = ? WHERE id = ? AND owner = ? AND state = {LEASED}"
)
SQL_DEAD = (
    f"UPDATE gorelay_messages SET state = {DEAD}, owner = NULL, dead_reason = ? WHERE id = ?"
)
SQL_DEAD_LETTERS = (
    "SELECT id, dead_reason, payload FROM gorelay_messages"
    f" WHERE queue = ? AND state = {DEAD} ORDER BY id"
)
SQL_SIZE = (
    f"SELECT count(*) FROM gorelay_messages WHERE queue = ? AND state IN ({READY}, {SCHEDULED})"
)
SQL_PURGE = f"DELETE FROM gorelay_messages WHERE queue = ? AND state IN ({READY}, {SCHEDULED})"
SQL_NEXT_DUE = (
    f"SELECT min(visible_at) FROM gorelay_messages WHERE state IN ({SCHEDULED}, {LEASED})"
)
SQL_DECLARE_EXCHANGE = "INSERT OR IGNORE INTO gorelay_exchanges (name, type) VALUES (?, ?)"
SQL_EXCHANGE_TYPE = "SELECT type FROM gorelay_exchanges WHERE name = ?"
SQL_BIND = (
    "INSERT OR IGNORE INTO gorelay_bindings (exchange, routing_key, pattern, queue)"
    " VALUES (?, ?, ?, ?)"
)
SQL_UNBIND = "DELETE FROM gorelay_bindings WHERE exchange = ? AND routing_key = ? AND queue = ?"
SQL_BINDINGS = "SELECT routing_key, pattern, queue FROM gorelay_bindings WHERE exchange = ?"
SQL_KV_GET = "SELECT value, expires_at FROM gorelay_kv WHERE key = ?"
SQL_KV_SET = "INSERT OR REPLACE INTO gorelay_kv (key, value, expires_at) VALUES (?, ?, ?)"
SQL_KV_DELETE = "DELETE FROM gorelay_kv WHERE key = ?"
# ?: a JSON array of keys (one parameter, any number of keys)
SQL_KV_MGET = (
    "SELECT key, value, expires_at FROM gorelay_kv"
    " WHERE key IN (SELECT value FROM json_each(?))"
)
SQL_KV_EXPIRE = (
    "UPDATE gorelay_kv SET expires_at = ? WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)"
)
SQL_KV_PURGE_EXPIRED = "DELETE FROM gorelay_kv WHERE expires_at <= ?"
# A scheduled or leased message whose time has come counts as ready (the next
# reserve makes it so); a waiting message past its expiry counts as gone.
_READY_NOW = (
    f"(m.state = {READY} OR (m.state IN ({SCHEDULED}, {LEASED}) AND m.visible_at <= :now))"
)
SQL_QUEUE_STATS = (
    "SELECT q.name, m.lane,"
    f" count(CASE WHEN {_READY_NOW} THEN 1 END),"
    f" count(CASE WHEN m.state = {SCHEDULED} AND m.visible_at > :now THEN 1 END),"
    f" count(CASE WHEN m.state = {LEASED} AND m.visible_at > :now THEN 1 END),"
    f" count(CASE WHEN m.state = {DEAD} THEN 1 END),"
    f" min(CASE WHEN {_READY_NOW} THEN m.created_at END)"
    " FROM gorelay_queues q LEFT JOIN gorelay_messages m ON m.queue = q.name"
    f"  AND (m.expires_at IS NULL OR m.expires_at > :now OR m.state NOT IN ({READY}, {SCHEDULED}))"
    " GROUP BY q.name, m.lane ORDER BY q.name, m.lane"
)


_PROBES: dict[int, str] = {}


def _probe_sql(queue_count: int) -> str:
    """One statement: (any due?, any expired?, any ready in these queues?)."""
    sql = _PROBES.get(queue_count)
    if sql is None:
        ready = " OR ".join(f"EXISTS({SQL_ANY_READY})" for _ in range(queue_count))
        sql = _PROBES[queue_count] = (
            f"SELECT EXISTS({SQL_ANY_DUE}), EXISTS({SQL_ANY_EXPIRED}), {ready}"
        )
    return sql


def _statements() -> list[str]:
    return [s.strip() for s in SCHEMA.split(";") if s.strip()]
