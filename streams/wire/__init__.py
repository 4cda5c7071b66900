"""What travels on the topics: the Avro serde and schema catalog (``serde``), the
records' shapes, their construction, derived ids and upload keys (``events``), and the
pipeline spec carried in uploads (``pipeline``: parsing, presets, validation).

Imports ``streams.config`` and ``processors`` only.
"""
