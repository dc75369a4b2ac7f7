"""Observability: process log lines now; metrics and alerts build on it."""
