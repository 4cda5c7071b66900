"""The HTTP API (`darkroom api`): images, reprocessing, operations, per-tenant keys."""
