"""Watching the stream: drift, prediction logging to MLflow, shadow comparisons."""
