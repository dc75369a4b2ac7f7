"""Resilience against failing dependencies: circuit breakers and declared services."""
