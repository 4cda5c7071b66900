"""Reprocessing: selecting uploads and re-emitting them (``select``, ``replay``), and
consumer groups: their lag, and moving their committed offsets (``groups``), on the
runtime's offset lookups (``streams.runtime.offsets``). Builds on the runtime, the wire
format and the result store; the CLI's ``replay``, ``groups`` and ``top`` commands are
thin layers over it.
"""
