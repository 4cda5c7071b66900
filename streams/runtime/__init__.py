"""What every consumer group runs on: the one consume → process → produce → commit loop
(``worker``), the supervisor that runs loops and services and restarts them, the Kafka
clients and the one way to produce durably (``kafka``), topic names and provisioning
(``topics``), the object-store client (``storage``), the one retry policy (``retry``),
logging (``logs``) and the egress policy for user-given URLs (``egress``).

Imports ``streams.config`` and ``processors`` only; never handlers, sinks, the CLI or the
development stack, which plug into it.
"""
