"""Recording runs where teams already look: MLflow runs, LangSmith trace names and metadata.

``mlflow_log`` is imported only when a tracking URI is set (MLflow is an optional extra).
"""

from agentx.tracking.langsmith import run_config


class TrackingError(RuntimeError):
    """The tracker cannot be reached or refused the run; the message says what to do."""


__all__ = ["TrackingError", "run_config"]
