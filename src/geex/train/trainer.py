"""The training loop: CodeGeeX's recipe on one CPU or on many GPUs, resumable at any step.

``train(config)`` is the whole of ``geex train``. Run the same config again on the same run
folder and it continues from the last checkpoint; SIGTERM or Ctrl-C (a preempted Slurm job)
writes a checkpoint before exiting.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import signal
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from geex.data.shards import TokenShards, read_manifest
from geex.errors import ConfigError, GeexError
from geex.model.checkpoint import clean_state_dict, read_config, save_weights
from geex.model.codegeex import CodeGeeX, build_model, flops_per_token
from geex.model.config import ModelConfig
from geex.model.generation_defaults import save_repetition_penalty, saved_repetition_penalty
from geex.os_faults import describe_os_fault
from geex.presets import model_preset, preset_decoding_penalty
from geex.tokenizer import load_tokenizer
from geex.train.checkpoint import CheckpointManager, checkpoint_step
from geex.train.compat import (
    check_init_weights,
    run_identity,
    shards_tokenizer_identity,
    tokenizer_identity,
)
from geex.train.config import TrainConfig
from geex.train.conversations import read_conversations
from geex.train.data import PackedSamples, document_positions_and_mask, micro_batch_start
from geex.train.distributed import World, close_world, init_world
from geex.train.grad_norm import global_norm
from geex.train.host_memory import give_back_freed_memory, keep_freed_memory
from geex.train.lora import add_lora, lora_config, merge_lora, save_adapter
from geex.train.monitor import MetricsLog, Progress, matmul_arithmetic, peak_flops
from geex.train.optim import build_optimizer, learning_rate
from geex.train.parallel import materialize, parallelize, wrap_data_parallel
from geex.train.precision import (
    AUTOCAST_DTYPES,
    DynamicLossScaler,
    autocast,
    resolve_precision,
)
from geex.train.run_folder import prepare_run_folder, write_run_record
from geex.train.sft_samples import SftSamples, fine_tuning_tokenizer
from geex.train.sharded_start import load_sharded_weights
from geex.train.tf32 import fp32_matmuls, tf32_applies
from geex.train.validate import Validation

# What a resume reads from a checkpoint's trainer state: a checkpoint lacking one is unusable.
RESUME_STATE_KEYS = ("step", "seq_len", "global_batch", "seed")


@dataclass
class TrainResult:
    out: Path
    steps: int
    tokens: int
    last_loss: float | None
    stopped_early: bool  # interrupted (signal) before the budget was spent


def train(
    config: TrainConfig, *, show_progress: bool = True, overwrite: bool = False
) -> TrainResult:
    """Train into ``config.out``; ``overwrite`` deletes an earlier run there and starts anew.

    Training on the CPU keeps freed memory in the process (:func:`keep_freed_memory`: no page
    faults for each step's new activations) and gives it back when it ends, so what runs next
    in the process (``geex run``'s evaluation, a test) does not hold training's peak. Training
    flushes subnormal floats to zero (:func:`flush_denormals`); the calling thread gets its own
    mode back when training returns, so code run after it in that thread (an evaluation, a
    test, a caller's own arithmetic) sees IEEE subnormals again; threads of torch's pool
    started meanwhile keep flushing them.
    """
    flushing_before = calling_thread_flushes_denormals()
    flush_denormals()
    world = init_world(config.device, config.parallel.tp)
    # Not a GPU run's host memory, which stages checkpoints on their way to disk.
    keeping = world.device.type == "cpu" and keep_freed_memory()
    try:
        result = _train_on(world, config, show_progress, overwrite)
        # The trainer's model and optimizer state (DTensors) reach the mesh's process groups
        # through reference cycles. Left to the collector at interpreter exit, they let gloo's
        # threads outlive the torn-down group, and a rank now and then aborts after a finished
        # run ("terminate called without an active exception", about 1 run in 8 on 2 CPU
        # ranks). Collected here, their memory is free before it is given back below.
        gc.collect()
    except BaseException:
        close_world(world, finished=False)
        raise
    finally:
        torch.set_flush_denormal(flushing_before)
        if keeping:
            give_back_freed_memory()
    close_world(world, finished=True)
    return result


def _train_on(world: World, config: TrainConfig, show_progress: bool, overwrite: bool):
    """The run itself; the trainer, its model and optimizer are released when it returns."""
    trainer = Trainer(config, world, show_progress=show_progress, overwrite=overwrite)
    with fp32_matmuls(trainer.config.precision, trainer.tf32, world.device):
        return trainer.run()


def flush_denormals() -> None:
    """Compute subnormal floats as zero on the CPU, in every thread of torch.

    An x86 core can take a hundred times longer over an operation on a subnormal float (below
    1.2e-38 in fp32). Where training's activations, gradients or optimiser state underflow
    there, the step slows by as much, and values that small carry nothing a model learns from.
    ``benchmarks/train_step.py --flush-denormals`` measures the difference on a machine.

    Each thread of torch's OpenMP pool keeps the floating-point mode it was started with, so
    this must run before the first parallel operation starts the pool; if that came first, a
    warning says so. Nothing changes on a GPU, or on a CPU without the mode (not x86).

    The pool's threads keep the mode for the life of the process; :func:`train` gives the
    calling thread its earlier mode back.
    """
    if torch.set_flush_denormal(True) and not every_thread_flushes_denormals():
        warnings.warn(
            "some of torch's CPU threads started before training asked for subnormal floats "
            "to be flushed, and still compute them: a step may run several times slower",
            RuntimeWarning,
            stacklevel=2,
        )


def calling_thread_flushes_denormals() -> bool:
    """Whether this thread computes subnormal floats as zero (one element: no pool thread)."""
    subnormal = torch.ones(1, dtype=torch.int32).view(torch.float32)
    return not bool(subnormal.mul(1.0).view(torch.int32).any())


def every_thread_flushes_denormals() -> bool:
    """Whether every thread of torch's pool computes subnormal floats as zero."""
    # The smallest subnormal, made from its bits (a conversion would flush it), over enough
    # elements that every thread takes a share: a thread that flushes multiplies it to zero.
    # The product is read back as bits too, since a flushing thread reads subnormals as zero.
    elements = 2**16 * torch.get_num_threads()
    subnormal = torch.ones(elements, dtype=torch.int32).view(torch.float32)
    return not bool(subnormal.mul(1.0).view(torch.int32).any())


def model_config_for(config: TrainConfig, vocab_size: int) -> ModelConfig:
    """The model to train: the checkpoint's when fine-tuning, else the preset sized to the data."""
    if config.init_from:
        model_config = read_config(config.init_from)
        if model_config.padded_vocab_size < vocab_size:
            raise GeexError(
                f"the data uses {vocab_size:,} token ids but {config.init_from} embeds only "
                f"{model_config.padded_vocab_size:,}: tokenize the data with the model's tokenizer"
            )
        return model_config.replace(dropout=config.dropout)
    fields = {"vocab_size": vocab_size, "dropout": config.dropout, **config.model}
    model_config = model_preset(config.preset).replace(**fields)
    if model_config.padded_vocab_size < vocab_size:
        raise ConfigError(
            f"the data uses {vocab_size:,} token ids but the model embeds only "
            f"{model_config.padded_vocab_size:,} (model.vocab_size {model_config.vocab_size:,}):"
            f" drop model.vocab_size from the config, or give at least {vocab_size:,}"
        )
    if config.seq_len and config.seq_len > model_config.max_seq_len:
        model_config = model_config.replace(max_seq_len=config.seq_len)
    return model_config


class Trainer:
    def __init__(
        self,
        config: TrainConfig,
        world: World,
        *,
        show_progress: bool = True,
        overwrite: bool = False,
    ):
        if not (config.data or config.sft) or not config.out:
            raise ConfigError(
                "data (the `geex data` folder, or sft conversations) and out (the run folder) "
                "are needed"
            )
        config.check_fine_tuning()
        config = dataclasses.replace(
            config, precision=resolve_precision(config.precision, world.device)
        )
        self.config, self.world, self.overwrite = config, world, overwrite
        self.out = Path(config.out)
        self.validation = None
        self._prepare_data()
        self._batch_geometry()

        self.lora_config = None
        if config.lora:
            self.lora_config = lora_config(
                config.lora,
                config.lora_alpha or 2 * config.lora,
                config.lora_dropout,
                str(Path(config.init_from).resolve()),
            )
        self.raw_model: CodeGeeX = self._build_model()
        self.model = wrap_data_parallel(self.raw_model, world, config.parallel)
        self.optimizer = build_optimizer(self.raw_model, config.optim)
        self.scaler = DynamicLossScaler() if config.precision == "fp16" else None
        self.checkpoints = CheckpointManager(
            self.out / "checkpoints", world, config.keep_checkpoints
        )
        self.metrics = MetricsLog(self.out / "metrics.jsonl", enabled=world.is_main)
        self.show_progress = show_progress and world.is_main
        self.flops_per_token = flops_per_token(self.model_config, self.seq_len)
        # MFU divides by the peak of the arithmetic the matmuls run in (TF32 for fp32 on GPUs
        # that have it, unless tf32 is off).
        self.tf32 = tf32_applies(config.precision, config.tf32, world.device)
        self.arithmetic = matmul_arithmetic(config.precision, self.tf32)
        self.peak = peak_flops(world.device, self.arithmetic)
        self.step = 0
        self.planned_steps = self._planned_steps()
        self.trained_seconds = 0.0  # wall time of the training loop, over every resumption
        self.warmup_seconds: float | None = None  # trained_seconds when warm-up ended
        self.max_time = config.max_time
        self._stop_requested = False
        self.just_resumed: Path | None = None  # the checkpoint loaded, until a step trains on it

    def _prepare_data(self) -> None:
        """The training samples, and the model and tokenizer they fix: conversations with the
        tokenizer of the model they tune (``sft``), or packed shards."""
        config = self.config
        if config.sft:
            self.tokenizer = fine_tuning_tokenizer(config.init_from)
            self.tokenizer_identity = tokenizer_identity(
                Path(config.init_from), self.tokenizer.vocab_size, self.tokenizer.eod_id
            )
            self.model_config = model_config_for(config, self.tokenizer.vocab_size)
            self.seq_len = config.seq_len or self.model_config.max_seq_len
            self.samples = SftSamples(
                read_conversations(config.sft),
                self.tokenizer,
                self.tokenizer.chat_template,
                self.seq_len,
                config.seed,
            )
            return
        self.shards = TokenShards(config.data, "train")
        self.tokenizer_identity = shards_tokenizer_identity(self.shards)
        self.model_config = model_config_for(config, self.shards.vocab_size)
        self.seq_len = config.seq_len or self.model_config.max_seq_len
        self.samples = PackedSamples(self.shards, self.seq_len, config.seed)
        held_out = _validation_split(config.data) if config.eval_every else None
        if held_out is not None:
            self.validation = Validation(
                held_out, self.seq_len, config.eval_tokens, _dataset_tokenizer(config.data)
            )
        elif config.eval_every and self.world.is_main:
            print(f"no validation: the dataset {config.data} has no validation split (too few "
                  "files for its validation fraction); training goes on without one",
                  file=sys.stderr, flush=True)  # fmt: skip

    def _build_model(self) -> CodeGeeX:
        c, world = self.config, self.world
        torch.manual_seed(c.seed)
        if self.lora_config is not None:
            # The frozen weights are loaded whole on the one device (tp and fsdp are refused
            # with LoRA), in the compute dtype under bf16/fp16 (they take no update, so need
            # no fp32 master copy: half the memory), then wrapped with fp32 adapters.
            model = build_model(self.model_config, device="meta")
            model.to(AUTOCAST_DTYPES.get(c.precision, torch.float32))  # meta: costs nothing
            model.to_empty(device=world.device)
            check_init_weights(c.init_from, model)
            load_sharded_weights(model, c.init_from)  # every tensor: nothing left to initialise
            add_lora(model, self.lora_config)
            parallelize(model, world, c.parallel)  # activation checkpointing, compile
            return model
        model = build_model(self.model_config, device="meta")
        parallelize(model, world, c.parallel, c.precision)
        if c.init_from:
            # Every tensor comes from the checkpoint, each rank reading its shards' slices:
            # nothing to draw first, and no rank holds a whole copy.
            check_init_weights(c.init_from, model)
            model.to_empty(device=world.device)
            load_sharded_weights(model, c.init_from)
        else:
            materialize(model, world.device, c.seed)
        return model

    def _batch_geometry(self) -> None:
        c, dp = self.config, self.world.dp
        tp = c.parallel.tp
        if c.parallel.sequence_parallel and self.seq_len % tp:
            raise ConfigError(
                f"sequence parallel splits each sequence over the tp={tp} ranks: a sequence of "
                f"{self.seq_len} tokens does not split into {tp} equal parts; make seq_len a "
                f"multiple of {tp}"
            )
        self.global_batch = max(1, c.global_batch_tokens // self.seq_len)
        per_step = c.micro_batch_size * dp
        if self.global_batch % per_step:
            lower = max(per_step, self.global_batch // per_step * per_step)
            raise ConfigError(
                f"global batch of {self.global_batch} sequences ({c.global_batch_tokens:,} tokens "
                f"/ seq_len {self.seq_len}) is not a multiple of micro_batch_size "
                f"{c.micro_batch_size} x {dp} data-parallel ranks; try global_batch_tokens "
                f"{lower * self.seq_len:,} or {(lower + per_step) * self.seq_len:,}"
            )
        self.accumulation = self.global_batch // per_step
        self.tokens_per_step = self.global_batch * self.seq_len

    def _planned_steps(self) -> int | None:
        c = self.config
        budgets = []
        if c.max_steps is not None:
            budgets.append(c.max_steps)
        if c.max_tokens is not None:
            budgets.append(math.ceil(c.max_tokens / self.tokens_per_step))
        if not budgets and c.max_time is None:
            raise ConfigError("give a budget: max_steps, max_tokens or max_time")
        return min(budgets) if budgets else None  # None: a time budget

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        self._on_main_rank(self._claim_run_folder)
        self._resume()
        self._on_main_rank(self._record_run)
        progress = Progress(
            self.planned_steps,
            self.step,
            enabled=self.show_progress,
            arithmetic=self.arithmetic if self.peak else None,
        )
        handlers = self._catch_signals()
        last_loss, step_times = None, []
        self._clock = (time.monotonic(), self.trained_seconds)
        if self.time_budget:  # one limit for all ranks, so that all stop at the same step
            self.max_time = float(self.world.broadcast_object(self.config.max_time))
        try:
            while not self._budget_spent():
                t0 = time.monotonic()
                record = self._train_step()
                if not math.isfinite(record["loss"]):
                    self._non_finite_loss(record["loss"])
                    self._clock = (time.monotonic(), self.trained_seconds)
                    continue
                self.just_resumed = None
                step_time = time.monotonic() - t0
                step_times.append(step_time)
                record.update(self._throughput(step_time))
                self._tick()
                if self._validation_due() and self.validation is not None:
                    record.update(self.validation.measure(
                        self.model, self.config.precision, self.config.micro_batch_size, self.world
                    ))  # fmt: skip
                self.metrics.write(record)
                if self.time_budget:
                    progress.set_total(self._expected_steps(step_times))
                progress.update(self.step, record)
                last_loss = record["loss"]
                self.step += 1
                if self._interrupted():
                    self._save()
                    return TrainResult(self.out, self.step, self._tokens(), last_loss, True)
                if self._due(self.config.checkpoint_every, after=True):
                    self._save()
        finally:
            progress.close()
            self._restore_signals(handlers)
        if self._latest_step() != self.step:
            self._save()
        self._export()
        return TrainResult(self.out, self.step, self._tokens(), last_loss, False)

    # -- the budget ----------------------------------------------------------------------------

    @property
    def time_budget(self) -> bool:
        """Only a time is given: the run stops when it is spent, and the learning rate decays
        with the share of it spent (not with steps, whose speed a busy machine changes)."""
        return self.planned_steps is None

    def _tick(self) -> None:
        """Add the wall time since the last step (validation and saves included), the same
        on every rank."""
        begun, before = self._clock
        self.trained_seconds = self.world.all_reduce_max(before + time.monotonic() - begun)

    def _budget_spent(self) -> bool:
        if self.time_budget:
            return self.trained_seconds >= self.max_time
        return self.step >= self.planned_steps

    def _decay_fraction(self) -> float | None:
        """Under a time budget, the share of the time after warm-up spent so far: the cosine
        starts where warm-up ends, whatever share of the budget warm-up took."""
        if not self.time_budget or self.step < self.config.optim.warmup_steps:
            return None
        if self.warmup_seconds is None:
            self.warmup_seconds = self.trained_seconds
        after_warmup = self.max_time - self.warmup_seconds
        if after_warmup <= 0:
            return 1.0
        return min(1.0, (self.trained_seconds - self.warmup_seconds) / after_warmup)

    def _expected_steps(self, step_times: list[float]) -> int:
        """Where a time budget will end, from the recent speed: for the progress bar only."""
        recent = sorted(step_times[-20:])[len(step_times[-20:]) // 2]
        remaining = max(0.0, self.max_time - self.trained_seconds)
        return self.step + 1 + int(remaining / max(recent, 1e-9))

    def _train_step(self) -> dict:
        c, world = self.config, self.world
        lr = learning_rate(self.step, c.optim, self.planned_steps, self._decay_fraction())
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        scale = self.scaler.scale if self.scaler else 1.0
        loss_sum = torch.zeros((), device=world.device)
        self.model.train()
        # Pretraining averages the micro-batches' mean losses. Fine-tuning averages over the
        # step's answer tokens, all ranks together (each rank's sum times dp / their number,
        # which the data-parallel mean of gradients divides by dp again): a micro-batch with
        # few answer tokens weighs no more than they do, whatever the layout.
        sft = isinstance(self.samples, SftSamples)
        per_step = 1 if sft else self.accumulation
        if sft:
            first = self.step * self.global_batch
            answer_tokens = self.samples.trained_targets(first, self.global_batch)
        for micro in range(self.accumulation):
            start = micro_batch_start(
                self.step,
                micro,
                world.dp_rank,
                global_batch=self.global_batch,
                micro_batch=c.micro_batch_size,
                accumulation=self.accumulation,
            )
            inputs, targets, kwargs = self._micro_batch(start)
            with self._gradient_sync(micro == self.accumulation - 1):
                with autocast(c.precision, world.device, self.model):
                    # The model computes the loss from its last hidden states, never holding
                    # the logits (geex.model.loss.linear_cross_entropy).
                    loss = self.model(
                        inputs, targets=targets, loss_reduction="sum" if sft else "mean", **kwargs
                    )
                    if sft:
                        loss = loss * (world.dp / answer_tokens)
                (loss * (scale / per_step)).backward()
            loss_sum += loss.detach()

        grads = [p.grad for p in self.raw_model.parameters() if p.grad is not None]
        if scale != 1.0:
            for g in grads:
                g.mul_(1.0 / scale)
        norm = global_norm(grads)  # one all-reduce, however the gradients are sharded
        overflow = not math.isfinite(norm)
        if self.scaler is not None:
            self.scaler.update(overflow)
        if not overflow:
            if c.optim.grad_clip and norm > c.optim.grad_clip:
                for g in grads:
                    g.mul_(c.optim.grad_clip / (norm + 1e-6))
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

        loss = self._mean_over_data_ranks(loss_sum / per_step)
        record = {"step": self.step, "loss": loss, "lr": lr, "grad_norm": norm}
        record["tokens"] = self._tokens(after_step=self.step + 1)
        if self.scaler is not None:
            record.update(loss_scale=scale, skipped=overflow)
        return record

    def _micro_batch(self, start: int):
        """Inputs, targets and the model's keyword arguments of the micro-batch at ``start``."""
        c, device = self.config, self.world.device
        if isinstance(self.samples, SftSamples):
            batch = self.samples.batch(start, c.micro_batch_size).to(device)
            kwargs = {"position_ids": batch.position_ids, "attn_mask": batch.attn_mask}
            return batch.inputs, batch.targets, kwargs
        batch = self.samples.batch(start, c.micro_batch_size).to(device)
        inputs, targets = batch[:, :-1], batch[:, 1:]
        kwargs = {}
        if c.reset_at_documents:
            positions, mask = document_positions_and_mask(inputs, self.shards.eod_id)
            kwargs = {"position_ids": positions, "attn_mask": mask}
        return inputs, targets, kwargs

    def _gradient_sync(self, sync: bool):
        """DDP all-reduces gradients only on the last micro-batch."""
        # FSDP2 reduce-scatters after every micro-batch instead: deferring it would keep
        # whole fp32 gradients on every rank between micro-batches, the memory FSDP saves.
        if sync or not hasattr(self.model, "no_sync"):
            return contextlib.nullcontext()
        return self.model.no_sync()  # DDP

    def _mean_over_data_ranks(self, value: torch.Tensor) -> float:
        if self.world.mesh is None:
            return float(value)
        value = value.detach().clone()
        dist.all_reduce(value, group=self.world.mesh["dp"].get_group())
        return float(value) / self.world.dp

    # -- budget, throughput ----------------------------------------------------------------------

    def _throughput(self, step_time: float) -> dict:
        tokens_per_s = self.tokens_per_step / step_time
        mfu = None
        if self.peak:
            mfu = self.flops_per_token * tokens_per_s / (self.peak * self.world.world_size)
        return {"tokens_per_s": tokens_per_s, "mfu": mfu, "step_time": step_time}

    def _tokens(self, after_step: int | None = None) -> int:
        return (self.step if after_step is None else after_step) * self.tokens_per_step

    def _validation_due(self) -> bool:
        """Every ``eval_every`` steps, and at the last step, so that a run's final numbers (its
        report's bits per byte) are of the model it saves."""
        if not self.config.eval_every:
            return False
        last = self._budget_spent() if self.time_budget else self.step + 1 >= self.planned_steps
        return last or self._due(self.config.eval_every)

    def _due(self, every: int, after: bool = False) -> bool:
        if not every:
            return False
        done = self.step if after else self.step + 1
        return done % every == 0

    # -- checkpoints -------------------------------------------------------------------------

    def _trainer_state(self) -> dict:
        return {
            "step": self.step,
            "samples": self.step * self.global_batch,
            "planned_steps": self.planned_steps,
            "trained_seconds": self.trained_seconds,
            "warmup_seconds": self.warmup_seconds,
            "tokens": self._tokens(),
            "seq_len": self.seq_len,
            "global_batch": self.global_batch,
            "seed": self.config.seed,
            "optimizer": self.config.optim.optimizer,
            "scaler": self.scaler.state_dict() if self.scaler else None,
        }

    def _save(self) -> None:
        self.checkpoints.save(self.step, self.model, self.optimizer, self._trainer_state())

    def _latest_step(self) -> int | None:
        """The step of the newest checkpoint known to be good (newer ones may be bad)."""
        good = self.checkpoints.good
        return checkpoint_step(good) if good else None

    def _non_finite_loss(self, loss: float) -> None:
        """Stop on a NaN or infinite loss, or, on the first step after a resume, blame the
        checkpoint and resume from an older one.

        Overflowing gradients under a finite loss are the fp16 loss scaler's to skip; a
        non-finite loss is not, and training on it would only save NaN weights over the good
        checkpoints. A checkpoint is only saved from a finite state, so a non-finite loss right
        after loading one points at damage the manifest did not catch.
        """
        if self.just_resumed is not None:
            self.checkpoints.reject(self.just_resumed, f"its first step gives a loss of {loss}")
            self._resume()
            return
        good = self.checkpoints.good
        where = f"the newest checkpoint is {good}" if good else "no checkpoint was saved"
        raise GeexError(
            f"step {self.step}: the loss is {loss}; training stopped without saving this state "
            f"({where}). Lower the learning rate (lr) or check the data, then run again"
        )

    def _resume(self) -> None:
        # What a run cannot change midway, checked before a checkpoint loads. Each optimizer
        # keeps a state of its own (AdamW's moments, Muon's momentum) that another cannot take
        # up; states saved before the optimizer was recorded were AdamW's.
        same = {
            "seq_len": (self.seq_len, None),
            "global_batch": (self.global_batch, None),
            "seed": (self.config.seed, None),
            "optimizer": (self.config.optim.optimizer, "adamw"),
        }
        restored = self.checkpoints.restore(
            self.model, self.optimizer, RESUME_STATE_KEYS, same=same
        )
        if restored is None:
            self.metrics.truncate_after(-1)
            return
        latest, state = restored
        self.just_resumed = latest
        self.step = state["step"]
        self.trained_seconds = state.get("trained_seconds", 0.0)
        self.warmup_seconds = state.get("warmup_seconds")
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.metrics.truncate_after(self.step - 1)

    def _claim_run_folder(self) -> None:
        """Claim the run folder, refusing a resumption that would mix two runs."""
        prepare_run_folder(
            self.out,
            identity=run_identity(self.model_config, self.tokenizer_identity),
            checkpoints=self.checkpoints,
            overwrite=self.overwrite,
        )

    def _record_run(self) -> None:
        write_run_record(
            self.out,
            identity={
                **run_identity(self.model_config, self.tokenizer_identity),
                "matmuls": self._matmuls(),
            },
            config=self.config.to_dict(),
        )

    def _matmuls(self) -> dict:
        """What the run's matmuls ran in and the peak its MFU divides by (None: unknown)."""
        device = self.world.device
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
        return {"arithmetic": self.arithmetic, "device": name, "peak_flops": self.peak}

    def _on_main_rank(self, work) -> None:
        """Run ``work`` on the main rank alone; every rank raises what it found, so that none is
        left waiting for the main rank at the next collective."""
        problem = None
        if self.world.is_main:
            try:
                work()
            except GeexError as err:
                problem = err
            except OSError as err:
                fault = describe_os_fault(err, str(self.out))  # a read-only or full --out
                if fault is None:  # not the machine's fault: a bug, whose traceback rank 0 keeps
                    self.world.broadcast_object(GeexError("the main rank failed; its log says why"))
                    raise
                problem = GeexError(fault)
        problem = self.world.broadcast_object(problem)
        if problem is not None:
            raise problem

    def _export(self) -> None:
        """The final weights as a Geex checkpoint (safetensors + config + tokenizer) in RUN/model;
        LoRA's adapter alone in RUN/adapter unless it is merged into them."""
        c = self.config
        tokenizer = self.tokenizer if c.sft else _dataset_tokenizer(c.data)
        if self.lora_config is not None and not c.lora_merge:
            if self.world.is_main:
                save_adapter(self.raw_model, self.lora_config, self.out / "adapter")
                if tokenizer is not None:
                    tokenizer.save(self.out / "adapter")
            return
        if self.lora_config is not None:
            merge_lora(self.raw_model)  # the run is over: its model may change shape
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        state = get_model_state_dict(
            self.raw_model if self.lora_config is not None else self.model, options=options
        )
        if not self.world.is_main:
            return
        save_weights(
            clean_state_dict(state),
            self.out / "model",
            config=self.model_config,
            tokenizer=tokenizer,
            metadata={"trained_steps": self.step, "trained_tokens": self._tokens()},
        )
        save_repetition_penalty(self.out / "model", self._repetition_penalty())

    def _repetition_penalty(self) -> float | None:
        """The decoding default the model is saved with: a fine-tuned model keeps its base's,
        a model of a preset's own shape gets the preset's (geex.model.generation_defaults)."""
        if self.config.init_from:
            return saved_repetition_penalty(self.config.init_from)
        return preset_decoding_penalty(self.config.preset, self.model_config)

    # -- signals -------------------------------------------------------------------------------

    def _catch_signals(self):
        def request_stop(signum, frame):
            if self._stop_requested:  # a second signal: stop now
                raise KeyboardInterrupt
            self._stop_requested = True

        previous = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError):  # not the main thread
                previous[sig] = signal.signal(sig, request_stop)
        return previous

    def _restore_signals(self, previous) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _interrupted(self) -> bool:
        return bool(self.world.all_reduce_max(float(self._stop_requested)))


def _validation_split(folder: str) -> TokenShards | None:
    """The held-out split, if the dataset has one (a damaged one is refused, not skipped)."""
    if "validation" not in read_manifest(folder)["splits"]:
        return None
    return TokenShards(folder, "validation")


def _dataset_tokenizer(folder: str):
    path = Path(folder) / "tokenizer.json"
    return load_tokenizer(path) if path.is_file() else None
