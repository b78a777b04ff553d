"""Metrics (pinned to the official scripts) and prediction."""
