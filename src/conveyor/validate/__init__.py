"""Validate a registered version before it takes traffic: the real server started for it, driven through
regression, performance and stability gates, with an HTML report and the verdict stored on the version."""

from conveyor.validate.gates import Gates, load_gates
from conveyor.validate.validator import Progress, ValidateOptions, ValidationResult, validate
from conveyor.validate.verdict import Check, GateResult

__all__ = [
    "Check",
    "GateResult",
    "Gates",
    "Progress",
    "ValidateOptions",
    "ValidationResult",
    "load_gates",
    "validate",
]
