"""Metrics, health and readiness of a running processor."""
