"""Sync between the office and the doors: bundles, stores (transports), apply, upload."""
