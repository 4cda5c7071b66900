"""Reprocessing: selecting uploads and re-emitting them (``select``, ``replay``), and moving
consumer groups' committed offsets (``groups``), with the offset lookups both need
(``offsets``). Builds on the runtime, the wire format and the result store; the CLI's
``replay`` and ``groups`` commands are thin layers over it.
"""
