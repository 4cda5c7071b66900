"""What consumes the final events: the result writer (``results``), the webhook outbox
(``outbox``: its SQL) and dispatcher (``dispatcher``: leases, concurrency, outcomes),
payload, signing, one attempt, the retry schedule and the per-target limiter
(``webhooks/``), and the one relational store with its migrations (``database``,
``migrations/``).
"""
