"""Errors raised by the storage layer. Each carries a short stable name."""


class StorageError(Exception):
    """Base class for every error the storage layer raises."""

    name = "storage_error"


class StoreLockedError(StorageError):
    """The data directory is held by another process (LevelDB's LOCK file)."""

    name = "store_locked"


class StoreCorruptionError(StorageError):
    """Stored bytes that cannot be what this code wrote: refuse to guess."""

    name = "store_corrupt"


class WALError(StorageError):
    """A consensus WAL that cannot be used (wrong file, oversized record)."""

    name = "wal_error"


class SigningStateError(StorageError):
    """A signing-state file that is unreadable or would move backwards.

    Never recovered from silently: resetting the signing state could make the validator
    sign twice at the same height and round.
    """

    name = "signing_state_error"
