"""The exception tree: one root, each subclass also the matching built-in."""


class AccessdError(Exception):
    """Root of every error accessd raises on purpose."""


class ConfigError(AccessdError, ValueError):
    """The configuration file (or a value in it) is wrong."""


class KeyFileError(ConfigError):
    """A key file is missing, unreadable, malformed or too widely readable."""


class CredentialFormatError(AccessdError, ValueError):
    """A credential value (UID, fob number, PIN) is malformed."""


class StoreError(AccessdError, RuntimeError):
    """The whitelist store cannot be read or written as asked."""


class NotFoundError(StoreError, LookupError):
    """A named credential does not exist."""


class EventLogError(AccessdError, RuntimeError):
    """The event log cannot be read, written, or its chain is broken."""


class ProtocolError(AccessdError, ValueError):
    """A control-socket request or reply is malformed."""


class HardwareError(AccessdError, OSError):
    """A device cannot be opened or driven."""


class DaemonUnavailable(AccessdError, ConnectionError):
    """The control socket does not answer (daemon not running?)."""


class BrokerError(AccessdError, ValueError):
    """The site's broker settings (office side) are missing or wrong."""


class CardAuthError(AccessdError, ValueError):
    """A secure card's answer is malformed or fails its cryptographic check."""


class RecoveryKeyError(AccessdError, ValueError):
    """A recovery key mistyped, or not the one a backup was made for (exit 1: bad input,
    not a configuration problem)."""


class ReleaseError(AccessdError, ValueError):
    """A software release was refused or could not be built or installed; says why."""
