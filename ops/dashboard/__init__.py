"""embedq dashboard: a live page, its JSON and the queue gauges for Prometheus."""
