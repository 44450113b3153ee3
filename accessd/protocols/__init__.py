"""Pure wire-protocol parsers for credential readers: bytes or bits in, frames out."""
