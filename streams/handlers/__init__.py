"""Per-record handlers plugged into the worker loop: ingest (upload → first step) and the
operation step (read input → run the operation → write outputs → emit the next event).
"""
