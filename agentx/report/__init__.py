"""Reading a workspace's runs back, and the self-contained HTML report of one run."""

from agentx.report.html import render_report, write_report
from agentx.report.workspace import ReportError, RunState, list_runs, load_run

__all__ = ["ReportError", "RunState", "list_runs", "load_run", "render_report", "write_report"]
