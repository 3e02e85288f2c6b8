"""The export stage: the trained model in Hugging Face format beside the Geex checkpoint.

torch is imported inside :meth:`ExportStage.run`, so that importing :mod:`geex.pipeline`
stays light.
"""

from __future__ import annotations

from geex.pipeline.checks import export_disk_bytes
from geex.pipeline.stage import RunContext, Stage
from geex.pipeline.stage_train import TrainStage


class ExportStage(Stage):
    name = "export"
    description = "the model in Hugging Face format"
    folder = "hf"
    reads = (TrainStage.model,)
    writes = (folder,)

    def disk_bytes(self, context: RunContext) -> int:
        return export_disk_bytes(context.params)

    def run(self, context: RunContext) -> dict:
        from geex.model.hf_export import export_hf

        # The run folder is the run's own: an export left by an earlier try is replaced.
        hf = export_hf(context.path(TrainStage.model), context.path(self.folder), overwrite=True)
        context.console.print(f"  {hf} (transformers, trust_remote_code=True)")
        return {"hf": str(hf)}
