"""Pools that size themselves on one host: `embedq up --autoscale` and `embedq autoscale`."""
