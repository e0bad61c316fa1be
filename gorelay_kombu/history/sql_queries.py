"""Schema and queries of the SQL task histories (SQLite, memory, PostgreSQL).

Templates, filled in once per history object by :func:`render`:

* ``{t}`` table prefix (``gorelay_history_`` in SQLite, ``"schema".history_``
  in PostgreSQL), ``{i}`` index name prefix;
* ``{seq_pk}``, ``{in_ids}``, ``{for_update}``, ``{skip_locked}``,
  ``{strpos}``, ``{greatest}``: the few places the two dialects differ
  (see :class:`Dialect`).

Values are always bound parameters, written ``:name`` (PostgreSQL's
``%(name)s`` is substituted by :func:`render`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .merge import (
    FAILED_METRIC,
    FILL,
    LOCKED_COLUMNS,
    RECORD_COLUMNS,
    ROW_COLUMNS,
    RUNTIME_METRIC,
    STAMP_COLUMNS,
    STATE_METRIC,
    SUCCEEDED_METRIC,
)

#: version of the history tables, kept in their own meta table
HISTORY_SCHEMA_VERSION = 2
VERSION_KEY = "history_schema_version"

SCHEMA = """
CREATE TABLE IF NOT EXISTS {t}meta (
    key text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE IF NOT EXISTS {t}tasks (
    -- the order the store first recorded its tasks in (History.tasks lists by it)
    seq {seq_pk},
    task_id text NOT NULL UNIQUE,
    state text NOT NULL,
    name text,
    queue text,
    lane integer,
    sent_at float8,
    received_at float8,
    started_at float8,
    finished_at float8,
    updated_at float8 NOT NULL,
    eta float8,
    args text,
    kwargs text,
    result text,
    exc_type text,
    exc_message text,
    traceback text,
    worker text,
    parent_id text,
    root_id text,
    group_id text,
    retry_of text,
    attempt integer,
    runtime float8,
    next_attempt_at float8,
    -- at of the event that set state (NULL: only actions so far)
    state_at float8,
    -- the timeline: JSON arrays [event, at, worker, info] joined by commas, in
    -- arrival order (one B-tree for a task's row and its events)
    timeline text NOT NULL
);
-- Every listing of History.tasks: a filter column, then seq (no filter: the primary
-- key).  A task's seq never changes, so an update touches these only when it moves
-- the state or changes queue, name or root_id.
CREATE INDEX IF NOT EXISTS {i}tasks_state ON {t}tasks (state, seq);
CREATE INDEX IF NOT EXISTS {i}tasks_queue ON {t}tasks (queue, seq);
CREATE INDEX IF NOT EXISTS {i}tasks_name ON {t}tasks (name, seq);
CREATE INDEX IF NOT EXISTS {i}tasks_root ON {t}tasks (root_id, seq);
-- History.prune: the oldest updated_at in a state first
CREATE INDEX IF NOT EXISTS {i}tasks_prune ON {t}tasks (state, updated_at);
CREATE TABLE IF NOT EXISTS {t}workers (
    hostname text PRIMARY KEY,
    pid integer,
    pool text,
    concurrency integer,
    queues text,
    started_at float8,
    last_seen float8 NOT NULL,
    done bigint NOT NULL,
    failed bigint NOT NULL,
    stopped integer NOT NULL
);
CREATE INDEX IF NOT EXISTS {i}workers_seen ON {t}workers (last_seen);
CREATE TABLE IF NOT EXISTS {t}names (
    name text PRIMARY KEY
);
-- Counters kept at write time: tasks per state, succeeded/failed per minute,
-- runtime buckets.  PostgreSQL writers only append to counter_deltas (no hot
-- rows), compaction folds them into counters, readers add both up.
CREATE TABLE IF NOT EXISTS {t}counters (
    metric text NOT NULL,
    bucket bigint NOT NULL,
    n bigint NOT NULL,
    total float8 NOT NULL,
    PRIMARY KEY (metric, bucket)
);
CREATE TABLE IF NOT EXISTS {t}counter_deltas (
    metric text NOT NULL,
    bucket bigint NOT NULL,
    n bigint NOT NULL,
    total float8 NOT NULL
)
"""

_RECORD = ", ".join(RECORD_COLUMNS)
#: the columns insert_task and update_task may name (shapes come from merge, not input)
_WRITABLE = frozenset({*ROW_COLUMNS, "seq"})

SQL_META_CREATE = SCHEMA.split(";")[0]
SQL_GET_VERSION = f"SELECT value FROM {{t}}meta WHERE key = '{VERSION_KEY}'"
SQL_SET_VERSION = (
    f"INSERT INTO {{t}}meta (key, value) VALUES ('{VERSION_KEY}', :version)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)

# SQLite: every history write transaction counts itself here, so a writer that merged
# a batch before taking the write lock can tell whether anything was written since.
SQL_COUNT_WRITE = (
    "INSERT INTO {t}meta (key, value) VALUES ('writes', '1')"
    " ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1 RETURNING value"
)
SQL_GET_WRITES = "SELECT value FROM {t}meta WHERE key = 'writes'"

# Version 1 (development builds, never released) kept timelines in a table of their
# own and listed by updated_at: its task tables are replaced (the queues are untouched).
SQL_DROP_V1 = ("DROP TABLE IF EXISTS {t}events", "DROP TABLE IF EXISTS {t}tasks",
               "DROP TABLE IF EXISTS {t}counters", "DROP TABLE IF EXISTS {t}counter_deltas")

# -- writing --------------------------------------------------------------------------
# What a writer merges with of a batch's stored tasks (merge.LOCKED_COLUMNS), locked in
# task-id order.
SQL_LOCK_TASKS = f"SELECT {', '.join(LOCKED_COLUMNS)} FROM {{t}}tasks" \
    " WHERE task_id {in_ids} ORDER BY task_id {for_update}"
# The INSERT of new tasks giving ``columns`` (insert_task builds it).  A row another
# transaction inserted first is skipped (rowcount tells): the batch is retried.
SQL_INSERT_TASK = "INSERT INTO {t}tasks ({columns}) VALUES ({values})" \
    " ON CONFLICT (task_id) DO NOTHING"
# SQLite numbers a batch's new tasks itself (one writer at a time), from the last seq
SQL_LAST_SEQ = "SELECT coalesce(max(seq), 0) FROM {t}tasks"


def insert_task(columns: Iterable[str]) -> str:
    """The INSERT template for new task rows giving ``columns`` (the others stay NULL)."""
    names = _checked(columns)
    return SQL_INSERT_TASK.replace("{columns}", ", ".join(names)).replace(
        "{values}", ", ".join(":" + c for c in names))


# The UPDATE of a stored task (merge.update_params): the timeline appended, then only
# the columns the batch moves, so that an update leaves the indexes alone unless it
# changes their columns.  update_task builds it from the shape merge.update_params gives:
SQL_UPDATE_TASK_HEAD = "UPDATE {t}tasks SET timeline = timeline || :timeline"
SQL_UPDATE_TASK_TAIL = " WHERE task_id = :task_id"
#: shape item -> SET clause: a value the writer merged, a time that only moves forward,
#: a field an older event only fills
SET_VALUE = "{c} = :{c}"
SET_LATER = "{c} = {{greatest}}(coalesce({c}, :{c}), :{c})"
SET_FILL = "{c} = coalesce({c}, :{c})"


def update_task(shape: Iterable[str]) -> str:
    """The UPDATE template for ``shape`` (see merge.update_params)."""
    sets = []
    for item in shape:
        if item in STAMP_COLUMNS:
            sets.append(SET_LATER.format(c=item))
        elif item.startswith(FILL):
            sets.append(SET_FILL.format(c=_checked([item[len(FILL):]])[0]))
        else:
            sets.append(SET_VALUE.format(c=_checked([item])[0]))
    return SQL_UPDATE_TASK_HEAD + "".join(", " + x for x in sets) + SQL_UPDATE_TASK_TAIL


def _checked(columns: Iterable[str]) -> list[str]:
    names = list(columns)
    unknown = set(names) - _WRITABLE
    if unknown:
        raise ValueError(f"not task history columns: {sorted(unknown)}")
    return names


SQL_ADD_NAME = "INSERT INTO {t}names (name) VALUES (:name) ON CONFLICT (name) DO NOTHING"
# SQLite (one writer at a time) adds to the counters in place...
SQL_ADD_COUNTER = (
    "INSERT INTO {t}counters AS c (metric, bucket, n, total)"
    " VALUES (:metric, :bucket, :n, :total)"
    " ON CONFLICT (metric, bucket) DO UPDATE SET n = c.n + excluded.n,"
    " total = c.total + excluded.total"
)
# ...PostgreSQL appends and compacts now and then (one compactor at a time).
SQL_ADD_COUNTER_DELTA = (
    "INSERT INTO {t}counter_deltas (metric, bucket, n, total)"
    " VALUES (:metric, :bucket, :n, :total)"
)
SQL_COMPACT_COUNTERS = (
    "WITH moved AS (DELETE FROM {t}counter_deltas RETURNING metric, bucket, n, total)"
    " INSERT INTO {t}counters AS c (metric, bucket, n, total)"
    " SELECT metric, bucket, sum(n), sum(total) FROM moved GROUP BY metric, bucket"
    " ORDER BY metric, bucket"
    " ON CONFLICT (metric, bucket) DO UPDATE SET n = c.n + excluded.n,"
    " total = c.total + excluded.total"
)
SQL_DELETE_TASKS = "DELETE FROM {t}tasks WHERE task_id {in_ids} RETURNING task_id, state"
# (state, updated_at) index; strictly before the cutoff
SQL_PRUNE_STATE = (
    "DELETE FROM {t}tasks WHERE seq IN (SELECT seq FROM {t}tasks"
    "  WHERE state = :state AND updated_at < :before ORDER BY updated_at LIMIT :limit"
    "  {skip_locked})"
    " RETURNING task_id, state"
)
SQL_HEARTBEAT = (
    "INSERT INTO {t}workers AS w (hostname, pid, pool, concurrency, queues, started_at,"
    "  last_seen, done, failed, stopped)"
    " VALUES (:hostname, :pid, :pool, :concurrency, :queues, :started_at, :at, :done,"
    "  :failed, coalesce(:stopped, 0))"
    " ON CONFLICT (hostname) DO UPDATE SET"
    "  pid = coalesce(excluded.pid, w.pid), pool = coalesce(excluded.pool, w.pool),"
    "  concurrency = coalesce(excluded.concurrency, w.concurrency),"
    "  queues = coalesce(excluded.queues, w.queues),"
    "  started_at = coalesce(excluded.started_at, w.started_at),"
    "  last_seen = {greatest}(excluded.last_seen, w.last_seen),"
    "  done = w.done + excluded.done, failed = w.failed + excluded.failed,"
    "  stopped = coalesce(:stopped, w.stopped)"
)
SQL_FORGET_WORKERS = "DELETE FROM {t}workers WHERE last_seen < :before"

# -- reading --------------------------------------------------------------------------
SQL_TASK = f"SELECT {_RECORD} FROM {{t}}tasks WHERE task_id = :task_id"
SQL_TIMELINE = "SELECT timeline FROM {t}tasks WHERE task_id = :task_id"
SQL_LIST = f"SELECT {_RECORD} FROM {{t}}tasks"
#: History.tasks filters, joined with AND in this order
LIST_FILTERS = {
    "state": "state = :state",
    "queue": "queue = :queue",
    "name": "name = :name",
    "root_id": "root_id = :root_id",
    # an id prefix or a substring of args / kwargs: may scan, the others never do
    "search": "(substr(task_id, 1, CAST(:search_len AS integer)) = :search"
              " OR {strpos}(args, :search) > 0 OR {strpos}(kwargs, :search) > 0)",
}
SQL_LIST_NEWEST = " ORDER BY seq DESC LIMIT :limit OFFSET :offset"
SQL_LIST_OLDEST = " ORDER BY seq LIMIT :limit OFFSET :offset"
SQL_NAMES = "SELECT name FROM {t}names ORDER BY name"


def list_query(filters: Iterable[str], newest_first: bool) -> str:
    """The History.tasks statement for the names of the given ``filters``."""
    wanted = set(filters)
    where = [LIST_FILTERS[k] for k in LIST_FILTERS if k in wanted]
    return (SQL_LIST + (" WHERE " + " AND ".join(where) if where else "")
            + (SQL_LIST_NEWEST if newest_first else SQL_LIST_OLDEST))



# Counters (compacted part plus not yet compacted deltas) of one or two metrics.
SQL_COUNTERS = (
    "SELECT metric, bucket, sum(n), sum(total) FROM ("
    "  SELECT metric, bucket, n, total FROM {t}counters"
    "   WHERE metric IN (:metric, :metric2) AND bucket >= :since"
    "  UNION ALL SELECT metric, bucket, n, total FROM {t}counter_deltas"
    "   WHERE metric IN (:metric, :metric2) AND bucket >= :since) AS c"
    " GROUP BY metric, bucket ORDER BY bucket, metric"
)
SQL_WORKERS = (
    "SELECT hostname, pid, pool, concurrency, queues, started_at, last_seen, done, failed,"
    " stopped FROM {t}workers ORDER BY hostname"
)

METRICS = (STATE_METRIC, SUCCEEDED_METRIC, FAILED_METRIC, RUNTIME_METRIC)


@dataclass(frozen=True)
class Dialect:
    """What differs between SQLite and PostgreSQL in the templates above."""

    name: str
    table_prefix: str
    index_prefix: str
    seq_pk: str
    in_ids: str
    for_update: str
    skip_locked: str
    strpos: str
    greatest: str
    pyformat: bool  # parameters as %(name)s (psycopg) instead of :name (sqlite3)
    #: True: the writer numbers new tasks (seq) itself, so one batch can insert them
    #: with one statement per set of columns and still number them in task-id order
    numbers_tasks: bool

    def render(self, template: str) -> str:
        text = self._fill(template)
        if self.pyformat:
            text = _PARAM.sub(r"%(\1)s", text)
        return text

    def render_positional(self, template: str) -> tuple[str, tuple[str, ...]]:
        """``template`` with positional parameters, and the names they take in order.

        Binding a tuple is much cheaper than looking each name up in a dict, for the
        statements run once per task.
        """
        text = self._fill(template)
        names = tuple(_PARAM.findall(text))
        return _PARAM.sub("%s" if self.pyformat else "?", text), names

    def _fill(self, template: str) -> str:
        return template.format(
            t=self.table_prefix, i=self.index_prefix, seq_pk=self.seq_pk, in_ids=self.in_ids,
            for_update=self.for_update, skip_locked=self.skip_locked, strpos=self.strpos,
            greatest=self.greatest,
        )


_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def sqlite_dialect(table_prefix: str = "gorelay_history_") -> Dialect:
    return Dialect(
        name="sqlite", table_prefix=table_prefix, index_prefix=table_prefix,
        seq_pk="INTEGER PRIMARY KEY",  # the rowid: kept by VACUUM, as a declared alias
        # one parameter for any number of ids: a JSON array
        in_ids="IN (SELECT value FROM json_each(:ids))",
        for_update="", skip_locked="", strpos="instr", greatest="max", pyformat=False,
        numbers_tasks=True,
    )


def postgres_dialect(quoted_schema: str) -> Dialect:
    return Dialect(
        name="postgresql", table_prefix=f"{quoted_schema}.history_", index_prefix="history_",
        seq_pk="bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        in_ids="= ANY(:ids)",
        for_update="FOR UPDATE", skip_locked="FOR UPDATE SKIP LOCKED", strpos="strpos",
        greatest="greatest", pyformat=True, numbers_tasks=False,
    )


def schema_statements(dialect: Dialect) -> list[str]:
    """The CREATE statements of :data:`SCHEMA`, each idempotent (no ``;`` in comments)."""
    return [dialect.render(s.strip()) for s in SCHEMA.split(";") if s.strip()]
