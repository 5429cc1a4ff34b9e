"""Reports over run folders: tables of scores (mean ± std over seeds, paper numbers beside) and figures."""

from ccli.report.collect import RunSummary, collect_run, collect_runs
from ccli.report.figures import MAPS
from ccli.report.render import FORMATS, write_report

__all__ = ["FORMATS", "MAPS", "RunSummary", "collect_run", "collect_runs", "write_report"]
