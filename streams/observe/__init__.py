"""Operating darkroom: Prometheus metrics, health, and the endpoint that serves them."""
