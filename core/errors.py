"""Errors raised by core primitives. Each carries a short stable name."""


class CoreError(Exception):
    """Base class for every error core raises on bad input."""

    name = "core_error"


class DecodeError(CoreError):
    """Bytes that are not the canonical encoding of an allowed value."""

    name = "decode_error"


class EncodeError(CoreError):
    """A value that has no canonical encoding (float, dict, unknown type, too large)."""

    name = "encode_error"


class SignatureError(CoreError):
    """A signature that does not verify, or a key of the wrong shape."""

    name = "bad_signature"


class AddressError(CoreError):
    """A text address that is malformed or fails its checksum."""

    name = "bad_address"
