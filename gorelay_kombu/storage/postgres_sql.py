"""The PostgreSQL store's schema and queries: named constants, bound parameters only.

``{s}`` stands for the store's schema, filled in once as a quoted identifier
(:meth:`PostgresStore.q`); every value is a bound parameter.
"""

from __future__ import annotations

from .base import DEAD, LEASED, READY, SCHEDULED

SCHEMA_VERSION = 1

# {s} is the schema, quoted as an identifier once at construction; values are bound.
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {{s}}.meta (
    key text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE IF NOT EXISTS {{s}}.queues (
    name text PRIMARY KEY,
    created_at float8 NOT NULL,
    message_ttl float8,
    expires float8,
    last_used float8 NOT NULL
);
CREATE TABLE IF NOT EXISTS {{s}}.messages (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue text NOT NULL,
    lane smallint NOT NULL,
    state smallint NOT NULL,
    visible_at float8 NOT NULL,
    owner text,
    deliveries integer NOT NULL DEFAULT 0,
    created_at float8 NOT NULL,
    dead_reason text,
    expires_at float8,
    payload bytea NOT NULL
);
-- (queue, state, lane, id): ready heads in service order, sizes and purges.
CREATE INDEX IF NOT EXISTS messages_queue ON {{s}}.messages (queue, state, lane, id);
CREATE INDEX IF NOT EXISTS messages_timed ON {{s}}.messages (visible_at)
    WHERE state IN ({SCHEDULED}, {LEASED});
CREATE INDEX IF NOT EXISTS messages_expiring ON {{s}}.messages (expires_at)
    WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS {{s}}.exchanges (
    name text PRIMARY KEY,
    type text NOT NULL
);
CREATE TABLE IF NOT EXISTS {{s}}.bindings (
    exchange text NOT NULL,
    routing_key text NOT NULL,
    pattern text,
    queue text NOT NULL,
    PRIMARY KEY (exchange, routing_key, queue)
);
CREATE INDEX IF NOT EXISTS bindings_queue ON {{s}}.bindings (queue);
CREATE TABLE IF NOT EXISTS {{s}}.kv (
    key text PRIMARY KEY,
    value bytea NOT NULL,
    expires_at float8
);
CREATE INDEX IF NOT EXISTS kv_expiring ON {{s}}.kv (expires_at) WHERE expires_at IS NOT NULL
"""

SQL_SCHEMA_EXISTS = "SELECT 1 FROM pg_namespace WHERE nspname = %s"
SQL_CREATE_SCHEMA = "CREATE SCHEMA IF NOT EXISTS {s}"
SQL_META_EXISTS = "SELECT to_regclass(%s) IS NOT NULL"
SQL_LOCK_SCHEMA = "SELECT pg_advisory_xact_lock(hashtext(%s))"
SQL_GET_VERSION = "SELECT value FROM {s}.meta WHERE key = 'schema_version'"
SQL_SET_VERSION = (
    "INSERT INTO {s}.meta (key, value) VALUES ('schema_version', %s)"
    " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
)
SQL_DECLARE_QUEUE = (
    "INSERT INTO {s}.queues AS q (name, created_at, message_ttl, expires, last_used)"
    " VALUES (%(name)s, %(now)s, %(ttl)s, %(expires)s, %(now)s)"
    " ON CONFLICT (name) DO UPDATE SET last_used = EXCLUDED.last_used"
    " WHERE q.expires IS NOT NULL"
)
SQL_TOUCH_QUEUES = (
    "UPDATE {s}.queues SET last_used = %s WHERE name = ANY(%s) AND expires IS NOT NULL"
)
# Data-modifying CTEs always run to completion, read or not: one statement.
SQL_EXPIRE_IDLE_QUEUES = (
    "WITH gone AS (DELETE FROM {s}.queues"
    "  WHERE expires IS NOT NULL AND last_used + expires <= %s RETURNING name),"
    " m AS (DELETE FROM {s}.messages WHERE queue IN (SELECT name FROM gone)),"
    " b AS (DELETE FROM {s}.bindings WHERE queue IN (SELECT name FROM gone))"
    " SELECT name FROM gone ORDER BY name"
)
SQL_HAS_QUEUE = "SELECT 1 FROM {s}.queues WHERE name = %s"
SQL_DELETE_QUEUE = (
    "WITH q AS (DELETE FROM {s}.queues WHERE name = %(q)s),"
    " m AS (DELETE FROM {s}.messages WHERE queue = %(q)s),"
    " b AS (DELETE FROM {s}.bindings WHERE queue = %(q)s)"
    " SELECT 1"
)
# One INSERT for any batch; expires_at is the earlier of the message's own
# expiry and now + the queue's message TTL.  The NOTIFY is part of the same
# transaction: consumers are woken exactly when the rows become visible.
SQL_PUT = (
    "WITH src AS (SELECT * FROM unnest(%(queues)s::text[], %(lanes)s::int2[],"
    "   %(states)s::int2[], %(visible)s::float8[], %(payloads)s::bytea[], %(expires)s::float8[])"
    "   WITH ORDINALITY AS t(queue, lane, state, visible_at, payload, expires_at, ord)),"
    " ins AS (INSERT INTO {s}.messages"
    "   (queue, lane, state, visible_at, created_at, payload, expires_at)"
    "   SELECT src.queue, src.lane, src.state, src.visible_at, %(now)s, src.payload,"
    "     CASE WHEN q.message_ttl IS NULL THEN src.expires_at"
    "          ELSE least(src.expires_at, %(now)s + q.message_ttl) END"
    "   FROM src LEFT JOIN {s}.queues q ON q.name = src.queue ORDER BY src.ord"
    "   RETURNING id)"
    " SELECT ins.id FROM ins, (SELECT pg_notify(%(channel)s, '')) AS n"
)
# The same for one message (the common publish), without the arrays.
SQL_PUT_ONE = (
    "WITH ins AS (INSERT INTO {s}.messages"
    "   (queue, lane, state, visible_at, created_at, payload, expires_at)"
    "   SELECT %(queue)s, %(lane)s, %(state)s, %(visible)s, %(now)s, %(payload)s,"
    "     CASE WHEN q.message_ttl IS NULL THEN %(expires)s::float8"
    "          ELSE least(%(expires)s::float8, %(now)s + q.message_ttl) END"
    "   FROM (SELECT) AS one LEFT JOIN {s}.queues q ON q.name = %(queue)s"
    "   RETURNING id)"
    " SELECT ins.id FROM ins, (SELECT pg_notify(%(channel)s, '')) AS n"
)
# Direct routing and the insert in one statement: the bindings are read by
# the INSERT itself (never a cached copy), one row per bound queue with that
# queue's message TTL applied as in SQL_PUT_ONE; the NOTIFY runs only when a
# row was inserted, in the same transaction.  Returns no row when no queue
# matched, else one row with the number of queues.
SQL_PUT_ROUTED = (
    "WITH ins AS (INSERT INTO {s}.messages"
    "   (queue, lane, state, visible_at, created_at, payload, expires_at)"
    "   SELECT b.queue, %(lane)s, %(state)s, %(visible)s, %(now)s, %(payload)s,"
    "     CASE WHEN q.message_ttl IS NULL THEN %(expires)s::float8"
    "          ELSE least(%(expires)s::float8, %(now)s + q.message_ttl) END"
    "   FROM {s}.bindings b LEFT JOIN {s}.queues q ON q.name = b.queue"
    "   WHERE b.exchange = %(exchange)s AND b.routing_key = %(routing_key)s"
    "   ORDER BY b.queue"
    "   RETURNING 1)"
    " SELECT c.n, pg_notify(%(channel)s, '') FROM (SELECT count(*) AS n FROM ins) AS c"
    " WHERE c.n > 0"
)
SQL_SET_SYNCHRONOUS_COMMIT = "SELECT set_config('synchronous_commit', %s, false)"
SQL_RESTORE_DUE = (
    f"UPDATE {{s}}.messages m SET state = {READY}, owner = NULL"
    f" FROM (SELECT id FROM {{s}}.messages WHERE state IN ({SCHEDULED}, {LEASED})"
    "   AND visible_at <= %s FOR UPDATE SKIP LOCKED) due"
    " WHERE m.id = due.id"
)
SQL_DROP_EXPIRED = (
    "DELETE FROM {s}.messages m USING (SELECT id FROM {s}.messages"
    f"   WHERE expires_at <= %s AND state IN ({READY}, {SCHEDULED}) FOR UPDATE SKIP LOCKED) x"
    " WHERE m.id = x.id"
)
SQL_LEASE_HEAD = (
    f"UPDATE {{s}}.messages m SET state = {LEASED}, visible_at = %(until)s, owner = %(owner)s,"
    " deliveries = m.deliveries + 1"
    f" FROM (SELECT id FROM {{s}}.messages WHERE state = {READY} AND queue = %(queue)s"
    "   ORDER BY lane, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED) head"
    " WHERE m.id = head.id"
    " RETURNING m.id, m.queue, m.lane, m.payload, m.deliveries"
)
# Several queues: each queue's head (index order, skipping rows another
# consumer holds), merged lane first, then queue order, then id.
SQL_LEASE_HEADS = (
    f"UPDATE {{s}}.messages m SET state = {LEASED}, visible_at = %(until)s, owner = %(owner)s,"
    " deliveries = m.deliveries + 1"
    " FROM (SELECT h.id FROM unnest(%(queues)s::text[]) WITH ORDINALITY AS q(name, rank)"
    f"   CROSS JOIN LATERAL (SELECT id, lane FROM {{s}}.messages WHERE state = {READY}"
    "     AND queue = q.name ORDER BY lane, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED) h"
    "   ORDER BY h.lane, q.rank, h.id LIMIT %(limit)s) head"
    " WHERE m.id = head.id"
    " RETURNING m.id, m.queue, m.lane, m.payload, m.deliveries"
)
SQL_ACK = "DELETE FROM {s}.messages WHERE id = ANY(%s)"
SQL_RELEASE = (
    f"WITH r AS (UPDATE {{s}}.messages SET state = {READY}, owner = NULL, visible_at = %(now)s"
    f"   WHERE id = ANY(%(ids)s) AND owner = %(owner)s AND state = {LEASED} RETURNING id)"
    " SELECT pg_notify(%(channel)s, '') FROM (SELECT 1 FROM r LIMIT 1) AS any_released"
)
SQL_RENEW = (
    "UPDATE {s}.messages SET visible_at = %s"
    f" WHERE id = ANY(%s) AND owner = %s AND state = {LEASED}"
)
SQL_DEAD = f"UPDATE {{s}}.messages SET state = {DEAD}, owner = NULL, dead_reason = %s WHERE id = %s"
SQL_DEAD_LETTERS = (
    "SELECT id, dead_reason, payload FROM {s}.messages"
    f" WHERE queue = %s AND state = {DEAD} ORDER BY id"
)
SQL_SIZE = (
    f"SELECT count(*) FROM {{s}}.messages WHERE queue = %s AND state IN ({READY}, {SCHEDULED})"
)
SQL_PURGE = f"DELETE FROM {{s}}.messages WHERE queue = %s AND state IN ({READY}, {SCHEDULED})"
SQL_NEXT_DUE = f"SELECT min(visible_at) FROM {{s}}.messages WHERE state IN ({SCHEDULED}, {LEASED})"
SQL_DECLARE_EXCHANGE = (
    "INSERT INTO {s}.exchanges (name, type) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING"
)
SQL_EXCHANGE_TYPE = "SELECT type FROM {s}.exchanges WHERE name = %s"
SQL_BIND = (
    "INSERT INTO {s}.bindings (exchange, routing_key, pattern, queue) VALUES (%s, %s, %s, %s)"
    " ON CONFLICT DO NOTHING"
)
SQL_UNBIND = "DELETE FROM {s}.bindings WHERE exchange = %s AND routing_key = %s AND queue = %s"
SQL_BINDINGS = "SELECT routing_key, pattern, queue FROM {s}.bindings WHERE exchange = %s"
SQL_KV_GET = (
    "SELECT value FROM {s}.kv WHERE key = %s AND (expires_at IS NULL OR expires_at > %s)"
)
SQL_KV_SET = (
    "INSERT INTO {s}.kv (key, value, expires_at) VALUES (%s, %s, %s)"
    " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at"
)
SQL_KV_DELETE = "DELETE FROM {s}.kv WHERE key = %s"
SQL_KV_DROP_EXPIRED = "DELETE FROM {s}.kv WHERE expires_at <= %s"
# The upsert and its NOTIFY (on the kv channel) in one statement: the
# notification is delivered at the commit.
SQL_KV_SET_NOTIFY = (
    "WITH up AS (INSERT INTO {s}.kv (key, value, expires_at) VALUES (%s, %s, %s)"
    "   ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at"
    "   RETURNING 1)"
    " SELECT pg_notify(%s, '') FROM up"
)
SQL_KV_MGET = (
    "SELECT key, value FROM {s}.kv"
    " WHERE key = ANY(%s) AND (expires_at IS NULL OR expires_at > %s)"
)
# One statement: the row lock of the upsert orders concurrent increments.  An
# expired value counts as 0; without a ttl the expiry is kept (or cleared
# when the old value had expired).
SQL_KV_INCR = (
    "INSERT INTO {s}.kv AS k (key, value, expires_at)"
    " VALUES (%(key)s, convert_to(%(amount)s::bigint::text, 'UTF8'), %(expires)s)"
    " ON CONFLICT (key) DO UPDATE SET"
    "  value = convert_to((CASE WHEN k.expires_at <= %(now)s THEN 0"
    "    ELSE convert_from(k.value, 'UTF8')::bigint END + %(amount)s::bigint)::text, 'UTF8'),"
    "  expires_at = CASE WHEN %(ttl_given)s THEN %(expires)s::float8"
    "    WHEN k.expires_at <= %(now)s THEN NULL ELSE k.expires_at END"
    " RETURNING convert_from(k.value, 'UTF8')::bigint"
)
# Stores only over an absent or expired key; also returns the live value
# that was there (the statement's snapshot: None when a concurrent add won
# after it began, which the caller retries).
SQL_KV_ADD = (
    "WITH ins AS (INSERT INTO {s}.kv AS k (key, value, expires_at)"
    "   VALUES (%(key)s, %(value)s, %(expires)s)"
    "   ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at"
    "   WHERE k.expires_at <= %(now)s"
    "   RETURNING 1)"
    " SELECT (SELECT count(*) FROM ins),"
    "  (SELECT value FROM {s}.kv WHERE key = %(key)s"
    "   AND (expires_at IS NULL OR expires_at > %(now)s))"
)
SQL_KV_EXPIRE = (
    "UPDATE {s}.kv SET expires_at = %s WHERE key = %s AND (expires_at IS NULL OR expires_at > %s)"
)
_READY_NOW = (
    f"(m.state = {READY} OR (m.state IN ({SCHEDULED}, {LEASED}) AND m.visible_at <= %(now)s))"
)
# A scheduled or leased message whose time has come counts as ready (the next
# reserve makes it so); a waiting message past its expiry counts as gone.
SQL_QUEUE_STATS = (
    "SELECT q.name, m.lane,"
    f" count(*) FILTER (WHERE {_READY_NOW}),"
    f" count(*) FILTER (WHERE m.state = {SCHEDULED} AND m.visible_at > %(now)s),"
    f" count(*) FILTER (WHERE m.state = {LEASED} AND m.visible_at > %(now)s),"
    f" count(*) FILTER (WHERE m.state = {DEAD}),"
    f" min(m.created_at) FILTER (WHERE {_READY_NOW})"
    " FROM {s}.queues q LEFT JOIN {s}.messages m ON m.queue = q.name"
    "  AND (m.expires_at IS NULL OR m.expires_at > %(now)s"
    f"   OR m.state NOT IN ({READY}, {SCHEDULED}))"
    " GROUP BY q.name, m.lane ORDER BY q.name, m.lane"
)
