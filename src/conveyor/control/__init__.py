"""The control plane: reconciler, rollouts, supervisor and the autoscaler policy."""

API_HEADER = "x-conveyor-api"
"""Every answer of the management API carries it (value: the API version), so a client that was pointed at
some other HTTP server (a wrong --url) says so instead of taking its answer for a Conveyor one. Defined here,
not in control/management.py, so the CLI reads it without loading FastAPI."""
