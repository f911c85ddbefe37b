"""Observability: how every Conveyor process logs (logs.py)."""
