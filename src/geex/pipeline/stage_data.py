"""The data stage: ``geex data`` on the run's sources, decontaminated against the benchmarks
the run evaluates on, with a tokenizer trained on it.

datatrove is imported inside :meth:`DataStage.run`, so that importing
:mod:`geex.pipeline` stays light.
"""

from __future__ import annotations

from geex.data.config import changed_output_fields
from geex.pipeline.checks import check_sources_readable, data_disk_bytes
from geex.pipeline.stage import RunContext, RunInterrupted, Stage


class DataStage(Stage):
    name = "data"
    description = "collect, clean, deduplicate, decontaminate, tokenize and shard the sources"
    folder = "data"  # shards, dataset.json, the tokenizer and the card
    card = "data/card.json"
    tokenizer = "data/tokenizer.json"
    writes = (folder,)

    def describe(self, context: RunContext) -> str:
        sources = ", ".join(context.data.sources) or "the code on this machine"
        return f"collect, clean, deduplicate, decontaminate, tokenize and shard {sources}"

    def settings(self, context: RunContext) -> dict:
        """The benchmarks the data was decontaminated against are left out: adding one later
        re-runs the evaluation with a warning rather than refusing the run."""
        fields = context.data.output_fields()
        fields.pop("decontaminate", None)
        return fields

    def changed_settings(self, before: dict, now: dict) -> list[str]:
        """As ``geex data`` compares them: options recorded since a run was made are not."""
        return changed_output_fields(before, now)

    def check(self, context: RunContext, *, to_run: bool) -> None:
        if to_run:
            from geex.data.sources import check_repository_options, resolve_sources

            check_sources_readable(context.data.sources)
            check_repository_options(context.data, resolve_sources(context.data))
            return
        if not context.state.done(self.name):
            return
        decontaminated = set(context.state.settings.get("decontaminated", []))
        for benchmark in context.config.decontaminate_against():
            if benchmark not in decontaminated:
                context.console.print(
                    f"[yellow]warning:[/yellow] the training data was not decontaminated "
                    f"against {benchmark}: its scores may count problems seen in training"
                )

    def disk_bytes(self, context: RunContext) -> int:
        return data_disk_bytes(context.data.sources)

    def run(self, context: RunContext) -> dict:
        from geex.data.pipeline import run_data_pipeline
        from geex.data.stage_progress import StageProgress

        config = context.data
        card = run_data_pipeline(config, on_stage=StageProgress(context.console, config))
        if card is None:
            raise RunInterrupted(
                f"the data stage was submitted to Slurm; when its jobs have written "
                f"{config.out}/dataset.json, run the same command again"
            )
        context.state.settings["decontaminated"] = config.decontaminate
        totals = card["totals"]
        context.console.print(
            f"  {totals['files']:,} files, {totals['bytes'] / 1e6:,.1f} MB, "
            f"{totals['tokens']:,} tokens in {len(card['languages'])} languages"
        )
        return {"tokens": totals["tokens"], "files": totals["files"]}

    def summary(self, record: dict) -> str:
        return f"{record.get('tokens', 0):,} tokens, {record.get('files', 0):,} files"
