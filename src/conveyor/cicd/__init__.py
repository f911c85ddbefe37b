"""CI/CD pipelines that release a model with the CLI (``conveyor init ci --github|--gitlab``)."""

from conveyor.cicd.pipeline import DEFAULT_PATHS, PipelineOptions, Target, render, write

__all__ = ["DEFAULT_PATHS", "PipelineOptions", "Target", "render", "write"]
