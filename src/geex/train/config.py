"""Training configuration: CodeGeeX's recipe as the defaults, one typed config for every scale.

The same fields come from CLI flags or a YAML file (``geex train --config run.yaml``); a field
name with a typo is refused with the list of valid ones.

The presets (torch, through :mod:`geex.presets`) are imported inside a method, so that
reading a training config stays light.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from geex.errors import ConfigError

PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class OptimConfig:
    """AdamW with linear warm-up then cosine decay to a floor, as CodeGeeX trained."""

    lr: float = 3e-4
    min_lr: float = 3e-5  # the floor the cosine decays to
    warmup_steps: int = 100
    decay_steps: int | None = None  # None: the run's max_steps
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.1  # never on biases or LayerNorm
    decay_embeddings: bool = True  # Megatron decays the embedding tables too
    grad_clip: float = 1.0  # global L2 norm; 0 disables


@dataclass
class ParallelConfig:
    """How the model is spread over the processes of a ``torchrun`` launch.

    The data-parallel size is what is left: world size / tp. With ``fsdp`` the data-parallel
    ranks shard parameters, gradients and optimizer state (FSDP2); otherwise they replicate
    (DDP). Tensor parallel splits every block's matmuls ``tp`` ways (Megatron-style, DTensor).
    """

    tp: int = 1
    fsdp: bool = False
    activation_checkpointing: bool = False
    compile: bool = False


@dataclass
class TrainConfig:
    data: str = ""  # a `geex data` output folder
    out: str = ""  # the run folder: checkpoints, metrics.jsonl, plots
    preset: str = "tiny"
    model: dict = field(default_factory=dict)  # ModelConfig fields changed from the preset
    init_from: str | None = None  # a Geex checkpoint folder to fine-tune
    seq_len: int | None = None  # None: the model's context length
    global_batch_tokens: int = 16_384  # per optimizer step, over all ranks
    micro_batch_size: int = 8  # sequences per rank per forward/backward
    max_steps: int | None = None
    max_tokens: int | None = None  # alternative budget: stop after this many training tokens
    max_time: float | None = None  # alternative budget, seconds of training
    seed: int = 1234
    precision: str = "fp32"
    reset_at_documents: bool = False  # restart positions and attention after each end-of-document
    dropout: float = 0.0
    checkpoint_every: int = 100  # steps; a checkpoint is also written when the run ends
    keep_checkpoints: int = 3
    eval_every: int = 100  # steps; 0 disables validation
    eval_tokens: int = 65_536  # per language
    device: str = "auto"
    optim: OptimConfig = field(default_factory=OptimConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)

    def __post_init__(self) -> None:
        if isinstance(self.optim, dict):
            self.optim = _from_dict(OptimConfig, self.optim, "optim")
        if isinstance(self.parallel, dict):
            self.parallel = _from_dict(ParallelConfig, self.parallel, "parallel")
        if isinstance(self.optim.betas, list):
            self.optim.betas = tuple(self.optim.betas)
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )
        for name in ("global_batch_tokens", "micro_batch_size", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.parallel.tp < 1:
            raise ConfigError(f"parallel.tp must be >= 1, got {self.parallel.tp}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, fields: dict) -> TrainConfig:
        """A config from plain fields, the preset's training defaults filling the rest."""
        from geex.presets import preset_of_checkpoint, train_preset

        preset = fields.get("preset")
        if preset is None and fields.get("init_from"):
            # Fine-tuning: the training defaults of the preset the checkpoint was built from.
            preset = preset_of_checkpoint(fields["init_from"])
            if preset is not None:
                fields = {**fields, "preset": preset}
        merged = train_preset(preset or "tiny")
        for key, value in fields.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
        return _from_dict(cls, merged, "train")

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(cls.read_yaml(path))

    @staticmethod
    def read_yaml(path: str | Path) -> dict:
        try:
            fields = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"cannot read config {path}: {err}") from None
        if not isinstance(fields, dict):
            raise ConfigError(f"{path} must hold a mapping of config fields")
        return fields


def _from_dict(cls, fields: dict, where: str):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), sorted(known), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"unknown {where} config field(s) {', '.join(unknown)}{hint}; valid fields: "
            f"{', '.join(sorted(known))}"
        )
    return cls(**fields)
