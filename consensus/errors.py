"""Errors raised by the consensus package. Each carries a short stable code."""


class ConsensusError(Exception):
    """Base class: bad input to consensus code (a message, a block, a commit, a config)."""

    code = "consensus_error"


class MessageError(ConsensusError):
    """Bytes or fields that do not form a well-shaped consensus message."""

    code = "bad_message"


class BlockError(ConsensusError):
    """A block whose header does not follow the chain it claims to extend."""

    code = "bad_block"


class CommitError(ConsensusError):
    """A commit certificate that does not prove +2/3 precommits for its block."""

    code = "bad_commit"


class EvidenceError(ConsensusError):
    """Evidence that does not prove an equivocation."""

    code = "bad_evidence"


class ValidatorSetError(ConsensusError):
    """A validator set or update that breaks the set's invariants."""

    code = "bad_validator_set"


class SigningRefused(ConsensusError):
    """The signing guard refused: the message could conflict with one already signed."""

    code = "signing_refused"


class WALError(ConsensusError):
    """A write-ahead-log entry that cannot be decoded."""

    code = "bad_wal_entry"
