"""What consumes the final events: the result writer (``results``), the webhook outbox
and dispatcher (``dispatcher``), signing and delivery (``webhooks``), the SSRF guard
(``egress``), and the one relational store with its migrations (``database``,
``migrations/``).
"""
