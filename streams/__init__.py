"""The Kafka side of darkroom: topics, Avro serde, storage I/O, workers, sinks and the CLI.

Image work lives in ``processors``; this package imports it, never the other way round.
"""
