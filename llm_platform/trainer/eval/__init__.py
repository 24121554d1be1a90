"""Evaluation: metrics on held-out data, benchmark adapters, reports."""
