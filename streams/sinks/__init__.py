"""What consumes the final events: the result writer (``results``), the webhook outbox
and dispatcher (``dispatcher``), signing and delivery (``webhooks``), and the one
relational store with its migrations (``database``, ``migrations/``).
"""
