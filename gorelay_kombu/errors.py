"""The one exception tree of gorelay-kombu.

Every error the library raises on purpose derives from :class:`GoRelayError`
and its message says what went wrong *and* how to fix it.  Driver errors are
wrapped at the store boundary (``raise StoreUnavailable(...) from exc``).

Two branches matter to Celery and kombu:

* :class:`StoreUnavailable` is transient (the store is busy or restarting);
  the transport lists it in ``connection_errors`` so kombu and Celery retry.
* :class:`ConfigurationError` is the user's mistake (bad URL, missing
  directory, wrong file); retrying cannot help, so it is raised at once.
"""

from __future__ import annotations


class GoRelayError(Exception):
    """Root of every error gorelay-kombu raises."""


class ConfigurationError(GoRelayError, ValueError):
    """A URL or option is wrong; the message names the fix."""


class InvalidURL(ConfigurationError):
    """A broker or store URL cannot be understood."""


class InvalidOption(ConfigurationError):
    """A transport option is unknown, of the wrong type or contradictory."""


class UnsupportedStore(ConfigurationError):
    """The URL names a store this installation cannot open."""


class StoreError(GoRelayError):
    """The store refused an operation."""


class StoreLocationError(StoreError, ConfigurationError):
    """The store's file or directory is missing or not writable."""


class NotAStoreError(StoreError, ConfigurationError):
    """The file exists but is not a database gorelay can use."""


class SchemaVersionError(StoreError, ConfigurationError):
    """The store was created by a newer gorelay-kombu release."""


class StoreUnavailable(StoreError):
    """The store is temporarily unreachable or busy; retrying may succeed."""


class MessageTooLarge(GoRelayError, ValueError):
    """A message is larger than ``max_message_bytes``; nothing was stored."""


class StoreAccessError(StoreError, ConfigurationError):
    """The store server refused this user: credentials or privileges."""


class StoreAuthenticationError(StoreAccessError):
    """The server rejected the user name or password in the URL."""


class StorePermissionError(StoreAccessError):
    """The user may connect but lacks a privilege the store needs (e.g. CREATE)."""


class StoreKeyConflict(StoreError, ConfigurationError):
    """A key under the store's prefix holds data gorelay did not write."""
