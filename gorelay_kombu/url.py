"""Store URLs: what ``gorelay://`` and ``gorelay+<store>://`` mean.

=====================================  =====================================
URL                                    store
=====================================  =====================================
``gorelay://``                         SQLite file ``./relay.db``
``gorelay+sqlite:///rel/path.db``      SQLite file ``rel/path.db`` (relative)
``gorelay+sqlite:////abs/path.db``     SQLite file ``/abs/path.db``
``gorelay+memory://name``              in-process memory store ``name``
``gorelay+postgresql://u:p@h/db``      PostgreSQL (also ``gorelay+postgres``)
``gorelay+redis://h:6379/0``           Redis (also ``gorelay+rediss``)
=====================================  =====================================

A query string (``?synchronous=FULL``) sets store options, the same ones
``transport_options`` takes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

from .errors import InvalidURL

DEFAULT_SQLITE_PATH = "relay.db"

_SCHEME_KIND = {
    "sqlite": "sqlite",
    "memory": "memory",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "redis": "redis",
    "rediss": "redis",
}

_FORMS = (
    "gorelay:// (SQLite ./relay.db), gorelay+sqlite:///relative/path.db, "
    "gorelay+sqlite:////absolute/path.db, gorelay+memory://name, "
    "gorelay+postgresql://user:password@host/db or gorelay+redis://host:6379/0"
)


@dataclass(frozen=True)
class StoreURL:
    """A parsed store URL.

    Attributes:
        kind: ``sqlite``, ``memory``, ``postgresql`` or ``redis``.
        location: the SQLite file path, the memory store's name, or the
            driver URL (without the ``gorelay+`` prefix) for server stores.
        options: options given in the query string.
    """

    kind: str
    location: str
    options: dict[str, str] = field(default_factory=dict)


def parse_store_url(url: str) -> StoreURL:
    """Parse any accepted form of a gorelay URL.

    Accepts the full broker URL (``gorelay+sqlite:///x.db``), the part kombu
    hands a transport after the ``+`` (``sqlite:///x.db``) and bare
    ``gorelay://``.

    Raises:
        InvalidURL: the URL has no known form; the message lists the forms.
    """
    if not isinstance(url, str) or "://" not in url:
        raise InvalidURL(f"Not a gorelay URL: {url!r}. Use one of: {_FORMS}.")
    scheme, rest = url.split("://", 1)
    scheme = scheme.lower()
    if scheme.startswith("gorelay+"):
        scheme = scheme[len("gorelay+"):]
    elif scheme == "gorelay":
        scheme = "sqlite"
    kind = _SCHEME_KIND.get(scheme)
    if kind is None:
        raise InvalidURL(f"Unknown gorelay store {scheme!r} in {url!r}. Use one of: {_FORMS}.")
    rest, _, query = rest.partition("?")
    try:
        options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError as exc:
        raise InvalidURL(
            f"Malformed query string {query!r} in {url!r}: use ?name=value&..."
        ) from exc
    if kind == "sqlite":
        return StoreURL("sqlite", _sqlite_path(rest, url), options)
    if kind == "memory":
        return StoreURL("memory", unquote(rest.strip("/")) or "default", options)
    return StoreURL(kind, f"{scheme}://{rest}", options)


def _sqlite_path(rest: str, url: str) -> str:
    # rest is what follows "://": "" (default file), "/rel.db" or "//abs.db".
    if rest in ("", "/"):
        return DEFAULT_SQLITE_PATH
    if not rest.startswith("/"):
        raise InvalidURL(
            f"SQLite URL {url!r} has a host part ({rest.split('/')[0]!r}); SQLite takes none. "
            "Write gorelay+sqlite:///relative/path.db (three slashes) or "
            "gorelay+sqlite:////absolute/path.db (four)."
        )
    path = unquote(rest[1:])
    if path.endswith("/"):
        raise InvalidURL(f"SQLite URL {url!r} names a directory; add a file name such as relay.db.")
    return path
