"""The report stage: ``report.md`` and ``report.html`` from what the other stages wrote."""

from __future__ import annotations

from geex.pipeline.report import REPORT_FILES, REPORT_READS, write_report
from geex.pipeline.stage import RunContext, Stage


class ReportStage(Stage):
    name = "report"
    description = "report.md and report.html"
    reads = REPORT_READS
    writes = REPORT_FILES

    def run(self, context: RunContext) -> dict:
        # The report's own stage time is not known while it is written; record the others.
        html, markdown = write_report(context.out, context.stage_summary)
        return {"html": str(html), "markdown": str(markdown)}
