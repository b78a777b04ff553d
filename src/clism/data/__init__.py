"""Datasets: where files come from (registry), and readers that turn them into records."""
