"""Training configuration: CodeGeeX's recipe as the defaults, one typed config for every scale.

The same fields come from CLI flags or a YAML file (``geex train --config run.yaml``); a field
name with a typo is refused with the closest valid name and the list of valid ones. A field's
flag, help and choices are in its :func:`geex.config.option`: adding a field adds its flag.

The presets (torch, through :mod:`geex.presets`) are imported inside a method, so that
reading a training config stays light.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from geex.config import coerce, dotted_name, field_types, from_dict, option, read_yaml_fields
from geex.errors import ConfigError

# auto: bf16 where the device computes it natively, else fp32 (geex.train.precision)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# adamw: CodeGeeX's. muon: Muon on the blocks' matmul weights, AdamW on the rest (geex.train.optim)
OPTIMIZERS = ("adamw", "muon")


@dataclass
class OptimConfig:
    """AdamW with linear warm-up then cosine decay to a floor, as CodeGeeX trained; or Muon
    for the blocks' matmul weights, with AdamW for the rest (``optimizer: muon``)."""

    optimizer: str = option(
        "adamw",
        choices=OPTIMIZERS,
        help="adamw, or muon: Muon for the blocks' matmul weights (one device or DDP), AdamW "
        "for embeddings, biases and LayerNorms, at the same lr and weight decay",
    )
    lr: float = option(3e-4, help="peak learning rate")
    min_lr: float = option(3e-5, help="the floor the cosine decays to")
    warmup_steps: int = 100
    decay_steps: int | None = option(None, help="cosine length (default: the run's)")
    betas: tuple[float, float] = option((0.9, 0.95), metavar=("BETA1", "BETA2"))
    eps: float = 1e-8
    weight_decay: float = 0.1  # never on biases or LayerNorm
    decay_embeddings: bool = option(  # Megatron decays the embedding tables too
        True, flags="--no-decay-embeddings", help="no weight decay on the embedding tables"
    )
    grad_clip: float = option(1.0, help="global norm; 0 disables")

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"optim.optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"
            )
        at_least(self, "optim", lr=0.0, min_lr=0.0, warmup_steps=0, weight_decay=0.0,
                 grad_clip=0.0)  # fmt: skip
        if self.decay_steps is not None:
            at_least(self, "optim", decay_steps=1)
        if not (isinstance(self.eps, (int, float)) and 0 < self.eps < math.inf):
            raise ConfigError(f"optim.eps must be > 0, got {self.eps!r}")
        if len(self.betas) != 2 or not all(0 <= beta < 1 for beta in self.betas):
            raise ConfigError(f"optim.betas must be two numbers in [0, 1), got {self.betas!r}")


@dataclass
class ParallelConfig:
    """How the model is spread over the processes of a ``torchrun`` launch.

    The data-parallel size is what is left: world size / tp. With ``fsdp`` the data-parallel
    ranks shard parameters, gradients and optimizer state (FSDP2); otherwise they replicate
    (DDP). Tensor parallel splits every block's matmuls ``tp`` ways (Megatron-style, DTensor).
    """

    tp: int = option(1, help="tensor-parallel degree")
    fsdp: bool = option(False, help="shard with FSDP2")
    # A bool in run files written before the selective modes: true is "full", false "none".
    activation_checkpointing: str | bool = option(
        "none",
        flags="--activation-checkpointing-mode",
        metavar="MODE",
        negation=("--activation-checkpointing", "full"),
        help="recompute activations in backward: none, full (every block), selective-op (keep "
        "every other matmul's output) or selective-N (every N-th block); "
        "--activation-checkpointing is full",
    )
    sequence_parallel: bool = option(
        False, help="with --tp: LayerNorms and residuals on sequence shards (Megatron-SP)"
    )
    compile: bool = False

    def __post_init__(self) -> None:
        self.activation_checkpointing = checkpointing_mode(self.activation_checkpointing)


ACTIVATION_CHECKPOINTING_MODES = ("none", "full", "selective-op", "selective-N")


def checkpointing_mode(value: str | bool) -> str:
    """``ParallelConfig.activation_checkpointing`` as a mode name; the old boolean becomes
    "full" or "none", so configs and run files written with it still load."""
    if isinstance(value, bool):
        return "full" if value else "none"
    if value in ("none", "full", "selective-op") or checkpointed_every(value):
        return value
    raise ConfigError(
        f"parallel.activation_checkpointing must be one of "
        f"{', '.join(ACTIVATION_CHECKPOINTING_MODES)} (N a positive integer), got {value!r}"
    )


def checkpointed_every(mode: str) -> int | None:
    """N of a "selective-N" mode (checkpoint every N-th block), else None."""
    prefix, _, number = mode.partition("selective-")
    if prefix or not number.isdecimal() or int(number) < 1:
        return None
    return int(number)


@dataclass
class TrainConfig:
    """Every field is a ``geex train`` flag (``optim`` and ``parallel`` fields without their
    prefix: ``--lr``, ``--tp``) and a key of ``--config`` YAML files."""

    data: str = option("", help="dataset folder written by `geex data`")
    out: str = option("", help="run folder (checkpoints, metrics.jsonl, model/)")
    preset: str = option("tiny", help="model preset (default: tiny)")
    # ModelConfig fields changed from the preset: a mapping, so a YAML file's `model:` section
    model: dict = option(default_factory=dict, flag=False)
    init_from: str | None = option(None, metavar="DIR", help="fine-tune from a Geex checkpoint")
    # Instruction fine-tuning: conversations instead of `geex data` shards (docs/training.md)
    sft: str | None = option(
        None,
        metavar="DATA",
        help="fine-tune --init-from on conversations: a JSONL or Parquet file or folder, rows "
        "with `messages` or `instruction`/`output`; the loss is on the answers only",
    )
    lora: int = option(
        0, metavar="R", help="train rank-R LoRA adapters only, not the weights (needs peft)"
    )
    lora_alpha: float | None = option(None, help="LoRA's alpha: updates scale by alpha/R (2R)")
    lora_dropout: float = 0.0
    lora_merge: bool = option(
        False, help="merge the LoRA adapter into the weights (RUN/model), not RUN/adapter alone"
    )
    seq_len: int | None = None  # None: the model's context length
    global_batch_tokens: int = 16_384  # per optimizer step, over all ranks
    micro_batch_size: int = 8  # sequences per rank per forward/backward
    max_steps: int | None = None
    max_tokens: int | None = None  # alternative budget: stop after this many training tokens
    max_time: float | None = option(None, metavar="SECONDS")  # alternative budget
    seed: int = 1234
    precision: str = option(
        "fp32", choices=PRECISIONS, help="auto: bf16 where the device computes it natively"
    )
    # fp32 runs on GPUs of compute capability >= 8.0 multiply in TF32 (geex.train.tf32)
    tf32: bool = option(
        True, flags="--no-tf32", help="fp32 matmuls in full fp32 on the CUDA cores, not in TF32"
    )
    reset_at_documents: bool = False  # restart positions and attention after each end-of-document
    dropout: float = 0.0
    checkpoint_every: int = 100  # steps; a checkpoint is also written when the run ends
    keep_checkpoints: int = 3
    eval_every: int = option(100, help="steps between validations; 0: never")
    eval_tokens: int = option(65_536, help="validation tokens per language")
    device: str = option("auto", help="auto, cpu, cuda")
    optim: OptimConfig = field(default_factory=OptimConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)

    def __post_init__(self) -> None:
        # Python code may give the nested configs as mappings too, as a YAML file does.
        if isinstance(self.optim, dict):
            self.optim = from_dict(OptimConfig, self.optim, "optim", kind="train")
        if isinstance(self.parallel, dict):
            self.parallel = from_dict(ParallelConfig, self.parallel, "parallel", kind="train")
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )
        at_least(self, "", global_batch_tokens=1, micro_batch_size=1, keep_checkpoints=1)
        # A budget of nothing would "finish" at once and save an untrained model.
        budgets = {k: getattr(self, k) for k in ("max_steps", "max_tokens", "seq_len")}
        at_least(self, "", **{k: 1 for k, v in budgets.items() if v is not None})
        if self.max_time is not None and not 0 < self.max_time < math.inf:
            raise ConfigError(f"max_time must be a number of seconds > 0, got {self.max_time!r}")
        at_least(self, "", seed=0, eval_every=0, eval_tokens=0, checkpoint_every=0)
        for name in ("dropout", "lora_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        if self.parallel.tp < 1:
            raise ConfigError(f"parallel.tp must be >= 1, got {self.parallel.tp}")

    def _muon_conflicts(self) -> list[str]:
        """What Muon cannot train: weights sharded (tp, fsdp) or LoRA's adapters."""
        given = {"tp": self.parallel.tp > 1, "fsdp": self.parallel.fsdp, "lora": self.lora > 0}
        return [name for name, on in given.items() if on]

    def check_fine_tuning(self) -> None:
        """Refuse fine-tuning and optimizer settings that do not go together; checked when a
        run starts (like data and out), so that a config may be written in parts."""
        if self.sft and self.data:
            raise ConfigError("give either data (`geex data` shards) or sft (conversations)")
        if (self.sft or self.lora) and not self.init_from:
            what = "sft" if self.sft else "lora"
            raise ConfigError(f"{what} fine-tunes a model: name it with init_from (--init-from)")
        if self.lora < 0:
            raise ConfigError(f"lora is the adapters' rank: >= 1, or 0 for none; got {self.lora}")
        if not self.lora and (self.lora_merge or self.lora_alpha is not None):
            raise ConfigError("lora_merge and lora_alpha need lora (--lora R)")
        conflicts = self._muon_conflicts() if self.optim.optimizer == "muon" else []
        if conflicts:
            raise ConfigError(
                f"optim.optimizer muon orthogonalises whole weight matrices, so it trains full "
                f"weights on one device or with DDP, not with {' or '.join(conflicts)} (set by "
                f"you or by the {self.preset} preset; a run file turns them off with "
                "parallel.tp: 1, parallel.fsdp: false, lora: 0): turn them off, or use "
                "--optimizer adamw"
            )
        if self.lora and (self.parallel.tp > 1 or self.parallel.fsdp):
            raise ConfigError(
                "lora trains on one device or with plain data parallel (DDP): the frozen "
                "weights take no optimizer state, so tp and fsdp are not needed for it"
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, fields: dict, where: str = "", *, kind: str = "train") -> TrainConfig:
        """A config from plain fields, the preset's training defaults filling the rest.

        ``where`` and ``kind`` name the fields in messages as :func:`geex.config.from_dict`
        does (a run file's ``train`` section is ``where="train", kind="run"``).
        """
        from geex.presets import preset_of_checkpoint, train_preset

        types = field_types(cls)
        for name in ("preset", "init_from"):  # read before from_dict checks the rest
            if fields.get(name) is not None:
                value = coerce(types[name], fields[name], dotted_name(where, name), kind)
                fields = {**fields, name: value}
        preset = fields.get("preset")
        if preset is None and fields.get("init_from"):
            # Fine-tuning: the training defaults of the preset the checkpoint was built from.
            preset = preset_of_checkpoint(fields["init_from"])
            if preset is not None:
                fields = {**fields, "preset": preset}
        merged = train_preset(preset or "tiny")
        if fields.get("lora"):
            # A preset's tp/FSDP layout shards full training's optimizer state; LoRA trains on
            # one device (or DDP) and refuses them, so only the user may ask (and be refused).
            parallel = merged.get("parallel", {})
            merged["parallel"] = {k: v for k, v in parallel.items() if k not in ("tp", "fsdp")}
        for key, value in fields.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
        config = from_dict(cls, merged, where, kind=kind)
        optim = fields.get("optim")
        asked = isinstance(optim, OptimConfig) or "optimizer" in (optim or {})
        if not asked and config._muon_conflicts():
            # The preset's Muon gives way to AdamW where the user shards or adapts the weights;
            # Muon the user asks for is refused there instead (check_fine_tuning).
            config.optim.optimizer = "adamw"
        return config

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(cls.read_yaml(path))

    @staticmethod
    def read_yaml(path: str | Path) -> dict:
        return read_yaml_fields(path, "train config")


def at_least(config, section: str, **lowest) -> None:
    """Refuse a field below its lowest value (or NaN), named as a config file names it."""
    for name, low in lowest.items():
        value = getattr(config, name)
        if not value >= low:  # NaN compares false
            where = f"{section}.{name}" if section else name
            raise ConfigError(f"{where} must be >= {low:g}, got {value!r}")
