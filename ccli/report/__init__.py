"""Reports over run folders: a markdown/HTML table of scores plus PNG plots."""

from ccli.report.collect import RunSummary, collect_run
from ccli.report.render import write_report

__all__ = ["RunSummary", "collect_run", "write_report"]
