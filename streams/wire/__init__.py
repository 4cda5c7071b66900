"""What travels on the topics: the Avro serde and schema catalog (``serde``), event
construction and derived ids (``events``), and the pipeline spec carried in uploads
(``pipeline``: parsing, presets, validation).

Imports ``streams.config`` and ``processors`` only.
"""
