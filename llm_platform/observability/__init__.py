"""Prometheus metrics shared by the trainer, the operator and the services."""
