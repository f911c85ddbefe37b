"""Tune how a version is served: batch size, queue delay, threads per replica and replicas, measured on
this machine with the real serving stack under load, the most throughput within a p99 bound winning."""

from conveyor.tune.search import Row, Setting, Trial
from conveyor.tune.tuner import Progress, TuneOptions, TuneResult, tune

__all__ = ["Progress", "Row", "Setting", "Trial", "TuneOptions", "TuneResult", "tune"]
