"""Memory per GPU of a training run, worked out before the GPUs are rented.

``geex model info --preset codegeex-13b --plan tp=8,dp=192`` prints it; keys the plan does
not give are what ``geex train --preset codegeex-13b`` would use. It counts what Geex itself
allocates, not an idealised trainer:

* Parameters, gradients and AdamW's m and v are fp32 in every precision (``precision.py``).
  FSDP2 shards each tensor's first dimension over the dp ranks and pads the shards to equal
  size; rank 0's shard, the largest, is what is counted.
* Tensor parallel splits the blocks' matmuls as ``parallel.BLOCK_TP_PLAN`` says, and the word
  embeddings (tied to the output head) and the position tables by rows
  (``vocab_parallel.ROW_SPLIT_TABLES``). LayerNorms and the row-parallel biases stay whole on
  every TP rank, so they divide by dp only.
* Without FSDP, bf16/fp16 run under autocast: it casts each matmul weight once per forward
  pass and keeps that copy in its cache until the forward pass ends (without activation
  checkpointing the autograd graph also keeps it until the layer's backward). These compute
  copies are whole over dp: a rank holds one for every weight of its TP slice at the end of
  the forward pass.
* FSDP2 runs bf16/fp16 with no autocast (``parallel.mixed_precision_policy``): it all-gathers
  a block's parameters cast to the compute dtype, 2 bytes each, just before the block runs,
  and one block ahead. The root module (embeddings, final LayerNorm) stays gathered from
  forward to backward, and its gradient stays whole until backward ends. A block's gradients
  come out of backward in the compute dtype; FSDP2's ``foreach_reduce`` copies them into an
  fp32 reduce-scatter input padded to dp equal chunks before it frees them, and keeps that
  input until the next block's gradients are reduced. Gradients are reduce-scattered after
  every micro-batch (``Trainer._gradient_sync``) into the fp32 shards, which accumulate there.
* Activations are counted the way Korthikanti et al. (2022) count them, "Reducing Activation
  Recomputation in Large Transformer Models": the bytes each tensor saved for backward holds.
  Their Megatron layer saves ``s*b*h*(34 + 5*a*s/h)`` bytes, ``s*b*h*(10 + 24/t + 5*a*s/(h*t))``
  with t-way tensor parallel. Geex's layer differs (see :func:`block_activation_bytes`): SDPA's
  flash and memory-efficient kernels keep no ``a*s*s`` attention matrix, only a logsumexp per
  query. Other tensors cost more than in Megatron: LayerNorm saves its input in fp32, under
  autocast the residual stream is fp32 and q, k and v cast their input separately, and
  FastGELU keeps its sigmoid. Under FSDP2's mixed precision the residual stream, q, k and v's
  one shared input and the checkpointed block inputs are in the compute dtype. With activation
  checkpointing, the count is each block's input, plus one block's saved tensors while it is
  recomputed; the selective modes keep more (:func:`selective_activation_bytes`). Sequence
  parallel (``sp=1``) divides the LayerNorm regions and the block inputs by t
  (:func:`block_activation_bytes`).
* The head and loss are fused (``geex.model.loss.linear_cross_entropy``): a chunk of rows at
  a time, each TP rank computes the fp32 logits of its vocabulary slice, V/t of them per row,
  never the whole ``b*s*V``.

The peak is the larger of two moments: the turn from forward to backward, where the working
set of the step is largest, and the optimizer step. It leaves out the CUDA context, NCCL
buffers and allocator fragmentation, which usually take a few GiB more.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel

from geex.errors import GeexError
from geex.model.codegeex import CodeGeeX
from geex.model.config import ModelConfig
from geex.model.loss import CHUNK_LOGITS
from geex.train.config import TrainConfig, checkpointed_every
from geex.train.parallel import BLOCK_TP_PLAN
from geex.train.vocab_parallel import ROW_SPLIT_TABLES, check_divides

COMPUTE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
GPU_BYTES = 80 * 2**30  # an A100 or H100 80GB
BOOLEAN_WORDS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


@dataclass(frozen=True)
class Plan:
    """A training layout. Keys not given take the training defaults of the model's preset
    (what ``geex train --preset NAME`` would use, see :func:`preset_defaults`), else these,
    which suit a large run."""

    tp: int = 1  # tensor-parallel degree
    dp: int = 1  # data-parallel degree (world size / tp)
    fsdp: bool = True  # shard parameters, gradients and optimizer state over dp (else DDP)
    mbs: int = 1  # micro-batch size: sequences per rank per forward pass
    seq: int | None = None  # sequence length; None: the model's context length
    # activation checkpointing: True (every block), False, "selective-op" or "selective-N"
    ac: bool | str = True
    sp: bool = False  # sequence parallel (needs tp > 1)
    precision: str = "bf16"
    accum: int | None = None  # micro-batches per step; None: from global_batch_tokens, or 1
    global_batch_tokens: int | None = None  # a preset's global batch (not a plan key)

    def resolved(self, config: ModelConfig) -> Plan:
        """The plan with ``seq`` and ``accum`` worked out, as the trainer works them out."""
        seq = self.seq or config.max_seq_len
        accum = self.accum
        if accum is None:
            sequences = (self.global_batch_tokens or 0) // seq
            accum = max(1, sequences // (self.mbs * self.dp))
        return replace(self, seq=seq, accum=accum)

    def describe(self) -> str:
        return (
            f"tp={self.tp} dp={self.dp} fsdp={int(self.fsdp)} mbs={self.mbs} seq={self.seq} "
            f"ac={_ac_word(self.ac)} precision={self.precision} accum={self.accum}"
            + (" sp=1" if self.sp else "")
        )


PLAN_KEYS = ("tp", "dp", "fsdp", "mbs", "seq", "ac", "precision", "accum", "sp")


def _ac_word(ac: bool | str) -> str:
    return str(int(ac)) if isinstance(ac, bool) else ac


def plan_checkpointing(mode: str) -> bool | str:
    """A training config's activation-checkpointing mode as a plan's ``ac``: full and none
    are the plan's 1 and 0, the selective modes keep their names."""
    return {"full": True, "none": False}.get(mode, mode)


def preset_defaults(preset: str) -> dict:
    """The plan keys ``geex train --preset NAME`` sets when given no other flag."""
    train = TrainConfig.from_dict({"preset": preset})
    return {
        "tp": train.parallel.tp,
        "fsdp": train.parallel.fsdp,
        "ac": plan_checkpointing(train.parallel.activation_checkpointing),
        "sp": train.parallel.sequence_parallel,
        "mbs": train.micro_batch_size,
        "seq": train.seq_len,
        # auto is bf16 on every device a plan is for (GPUs with bf16, CPUs with AMX)
        "precision": "bf16" if train.precision == "auto" else train.precision,
        "global_batch_tokens": train.global_batch_tokens,
    }


def parse_plan(text: str, defaults: dict | None = None) -> Plan:
    """``"tp=8,dp=192,ac=0"`` -> :class:`Plan`; keys not given come from ``defaults`` (e.g.
    :func:`preset_defaults`), else from :class:`Plan`."""
    valid = f"valid keys: {', '.join(PLAN_KEYS)}"
    values: dict = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, raw = (s.strip() for s in item.partition("="))
        if not sep or not raw:
            raise GeexError(f"plan item {item!r} is not key=value; {valid}")
        if key not in PLAN_KEYS:
            raise GeexError(f"unknown plan key {key!r}; {valid}")
        if key in values:
            raise GeexError(f"plan key {key!r} is given twice")
        values[key] = _plan_value(key, raw)
    plan = Plan(**{**(defaults or {}), **values})
    if plan.tp > 1 and plan.dp > 1 and not plan.fsdp:
        raise GeexError(
            "tp > 1 with dp > 1 needs fsdp=1: Geex refuses DDP over tensor-parallel parameters"
        )
    if plan.sp and plan.tp < 2:
        raise GeexError("sp=1 splits sequences over tensor-parallel ranks: it needs tp > 1")
    return plan


def _plan_value(key: str, raw: str):
    if key == "precision":
        if raw not in COMPUTE_BYTES:
            raise GeexError(f"plan key 'precision' must be one of {', '.join(COMPUTE_BYTES)}")
        return raw
    if key == "ac" and raw.lower() in ("full", "none"):
        return raw.lower() == "full"
    if key == "ac" and (raw == "selective-op" or checkpointed_every(raw)):
        return raw
    if key in ("fsdp", "ac", "sp"):
        if raw.lower() not in BOOLEAN_WORDS:
            modes = ", selective-op or selective-N" if key == "ac" else ""
            raise GeexError(f"plan key {key!r} must be 1 or 0{modes}, got {raw!r}")
        return BOOLEAN_WORDS[raw.lower()]
    try:
        number = int(raw)
    except ValueError:
        number = 0
    if number < 1:
        raise GeexError(f"plan key {key!r} must be a positive integer, got {raw!r}")
    return number


# -- parameters ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParameterCounts:
    """Elements per GPU (rank 0) under a plan."""

    sharded: int  # persistent fp32 shard: parameters, and likewise gradients, m and v
    tp_local: int  # the rank's TP slice, whole over dp: what FSDP gathers, block by block
    block: int  # one ordinary block's TP slice
    block_padded: int  # the same padded to dp equal chunks: FSDP's reduce-scatter input
    root: int  # embeddings and final LayerNorm: FSDP's root module
    word_embeddings: int  # the rank's rows of them
    cast: int  # elements autocast copies to the compute dtype: matmul weights and biases


def parameter_counts(config: ModelConfig, tp: int = 1, dp: int = 1, fsdp: bool = True):
    with torch.device("meta"):
        model = CodeGeeX(config)
    sharded = tp_local = block = block_padded = root = cast = 0
    for name, param in model.named_parameters():
        shape = _tp_local_shape(name, tuple(param.shape), tp)
        local = _numel(shape)
        tp_local += local
        # FSDP2 pads dim 0 to dp equal chunks: rank 0 holds ceil(dim0 / dp) rows
        shard = -(-shape[0] // dp) * _numel(shape[1:]) if fsdp else local
        sharded += shard
        if name.startswith("layers.0."):
            block += local
            block_padded += dp * shard if fsdp else local
        if not name.startswith(("layers.", "top_query_layer.")):
            root += local
        if ("attention." in name or "mlp." in name) or name == "word_embeddings.weight":
            cast += local
    words = config.padded_vocab_size // tp * config.d_model
    return ParameterCounts(sharded, tp_local, block, block_padded, root, words, cast)


def _tp_local_shape(name: str, shape: tuple[int, ...], tp: int) -> tuple[int, ...]:
    """A parameter's shape on one TP rank, as BLOCK_TP_PLAN and ROW_SPLIT_TABLES split it."""
    if tp > 1 and name.removesuffix(".weight") in ROW_SPLIT_TABLES:
        return (shape[0] // tp, *shape[1:])
    if tp == 1 or not name.startswith(("layers.", "top_query_layer.")):
        return shape
    within_block = name.split(".", 2)[-1] if name.startswith("layers.") else name.split(".", 1)[1]
    module, kind = within_block.rsplit(".", 1)
    style = BLOCK_TP_PLAN.get(module)
    if isinstance(style, ColwiseParallel):
        dim = 0
    elif isinstance(style, RowwiseParallel) and kind == "weight":
        dim = 1
    else:
        return shape  # LayerNorms and row-parallel biases are replicated
    split = list(shape)
    split[dim] //= tp
    return tuple(split)


def _numel(shape) -> int:
    n = 1
    for size in shape:
        n *= size
    return n


# -- activations -----------------------------------------------------------------------------


def block_activation_bytes(
    config: ModelConfig,
    batch: int,
    seq: int,
    tp: int,
    precision: str,
    *,
    top_query=False,
    fsdp=False,
    sp=False,
) -> int:
    """Bytes one Geex block saves for backward, Korthikanti et al.'s count for Geex's layer.

    On every TP rank, whole (Megatron's "10"): both LayerNorms' inputs, which they upcast to
    fp32, with their fp32 mean and rstd, the inputs of the column-parallel matmuls, and the
    two dropout masks when dropout is on. Under autocast q, k and v each cast the same input,
    so three copies; under FSDP2's mixed precision (``fsdp``) the input is already in the
    compute dtype and the three share it.
    Split over TP ranks (Megatron's "24/t"): SDPA's q, k, v and output with a logsumexp per
    query (the fused kernels lay the output out so that the attention projection's input is a
    view of it); the MLP's input to FastGELU and its product (and its sigmoid under tensor
    parallel). The top query
    layer's queries come from a position table of batch 1, expanded to the batch; the query
    projection materialises the expansion (to flatten it, or to cast it), so the layer saves
    what any block does. Token ids (8 bytes a token) are left out.
    Sequence parallel (``sp``) splits the LayerNorms' part and the dropout masks over the TP
    ranks; the column-parallel matmuls' inputs stay whole, since torch's ``ColwiseParallel``
    saves the gathered input (Megatron-SP saves the shard and gathers it again in backward).
    """
    c = COMPUTE_BYTES[precision]
    h, f, heads = config.d_model, config.d_ffn, config.n_head // tp
    sbh, sbf, sb = seq * batch * h, seq * batch * f, seq * batch
    layernorms = 2 * 4 * sbh + 2 * 2 * 4 * sb  # fp32 LayerNorm inputs, mean, rstd
    if config.dropout:
        layernorms += 2 * sbh  # boolean masks of the two residual dropouts
    whole = layernorms // tp if sp else layernorms
    if c < 4 and not fsdp:
        whole += c * 3 * sbh + c * sbh  # autocast's casts into q, k, v and the MLP
    else:  # q, k and v share their input; the top query layer's queries have their own
        whole += c * sbh * (2 if top_query else 1) + c * sbh
    attention = 4 * c * sbh // tp + 4 * batch * heads * seq
    # The training MLP (geex.model.training_mlp) saves FastGELU's input and output; tensor
    # parallel's sharded linears take the plain path, which also saves the sigmoid.
    mlp = (2 if tp == 1 else 3) * c * sbf // tp
    return whole + attention + mlp


def activation_bytes(
    config: ModelConfig, batch: int, seq: int, tp: int, precision: str, *, fsdp=False, sp=False
) -> int:
    """Everything one forward pass saves for backward up to the logits, without checkpointing;
    ``fsdp``: under FSDP2's mixed precision rather than autocast."""
    kw = dict(fsdp=fsdp, sp=sp)
    block = block_activation_bytes(config, batch, seq, tp, precision, **kw)
    top = block_activation_bytes(config, batch, seq, tp, precision, top_query=True, **kw)
    return config.n_layer * block + top + _outside_blocks_bytes(config, batch, seq, tp, sp)


def checkpointed_activation_bytes(
    config: ModelConfig,
    batch: int,
    seq: int,
    tp: int,
    precision: str,
    *,
    fsdp=False,
    sp=False,
    every: int = 1,
) -> int:
    """With every ``every``-th block checkpointed (1: all of them, "full"; N: "selective-N",
    counting the top query layer as the last block): each checkpointed block's input (the top
    query layer's two), fp32 under autocast, in the compute dtype under FSDP2's mixed
    precision, split by sequence under ``sp``; the other blocks' saved tensors; and the saved
    tensors of the one block being recomputed in backward."""
    kw = dict(fsdp=fsdp, sp=sp)
    block = block_activation_bytes(config, batch, seq, tp, precision, **kw)
    top = block_activation_bytes(config, batch, seq, tp, precision, top_query=True, **kw)
    stream = _block_input_bytes(config, batch, seq, tp, precision, fsdp, sp)
    total = _outside_blocks_bytes(config, batch, seq, tp, sp)
    positions = range(1, config.n_layer + 2)
    for position in positions:
        is_top = position == positions[-1]
        if position % every:
            total += top if is_top else block
        else:  # the top query layer also keeps its queries, whole
            r = residual_bytes(precision, fsdp)
            total += stream + (r * seq * config.d_model if is_top else 0)
    if every <= len(positions):
        total += max(block, top)  # the block being recomputed
    return total


def selective_activation_bytes(
    config: ModelConfig, batch: int, seq: int, tp: int, precision: str, *, fsdp=False, sp=False
) -> int:
    """With "selective-op" (``geex.train.activation_checkpointing``): every block keeps its
    input and the outputs of the ops its policy keeps, all in the compute dtype c: the query
    and value projections' and the MLP's first (every other matmul), ``c*s*b*(2h + f)/t``; the
    attention kernel's output and logsumexp, ``c*s*b*h/t + 4*b*a*s/t``; under sequence
    parallel the two row-parallel outputs after their reduce-scatter, ``2*c*s*b*h/t`` (plain
    tensor parallel's all-reduces are recomputed). Plus one block's saved tensors while it is
    recomputed."""
    c, h, f = COMPUTE_BYTES[precision], config.d_model, config.d_ffn
    sb, heads = seq * batch, config.n_head // tp
    kept = c * sb * (2 * h + f) // tp + c * sb * h // tp + 4 * batch * heads * seq
    if sp:
        kept += 2 * c * sb * h // tp
    stream = _block_input_bytes(config, batch, seq, tp, precision, fsdp, sp)
    r = residual_bytes(precision, fsdp)
    blocks = config.n_attention_layers
    kw = dict(fsdp=fsdp, sp=sp)
    recomputed = max(
        block_activation_bytes(config, batch, seq, tp, precision, **kw),
        block_activation_bytes(config, batch, seq, tp, precision, top_query=True, **kw),
    )
    top_queries = r * seq * h
    outside = _outside_blocks_bytes(config, batch, seq, tp, sp)
    return blocks * (stream + kept) + top_queries + recomputed + outside


def _block_input_bytes(config, batch, seq, tp, precision, fsdp, sp) -> int:
    """One block's input, the residual stream: split by sequence under sequence parallel."""
    stream = residual_bytes(precision, fsdp) * seq * batch * config.d_model
    return stream // tp if sp else stream


def residual_bytes(precision: str, fsdp: bool) -> int:
    """Bytes of an element of the residual stream: fp32 under autocast (it leaves additions in
    fp32), the compute dtype where FSDP2 gathers the embeddings in it."""
    return COMPUTE_BYTES[precision] if fsdp else 4


def _outside_blocks_bytes(config: ModelConfig, batch: int, seq: int, tp=1, sp=False) -> int:
    """The final LayerNorm's fp32 input and statistics (the fused loss keeps no input)."""
    sb, sbh = seq * batch, seq * batch * config.d_model
    return (4 * sbh + 2 * 4 * sb) // (tp if sp else 1)


def loss_saved_bytes(
    config: ModelConfig, batch: int, seq: int, precision: str = "fp32", *, fsdp=False
) -> int:
    """What the fused head and cross-entropy (geex.model.loss.linear_cross_entropy) keep for
    backward: the last hidden states' gradient, computed in the forward pass in the hidden
    states' dtype (that of the residual stream). The head's
    gradient is computed there too; it is the word embeddings' gradient, counted with the
    gradients. No logits are kept."""
    return residual_bytes(precision, fsdp) * batch * seq * config.d_model


# -- the plan --------------------------------------------------------------------------------

KEPT, WORKING, STEP = "kept", "forward/backward", "optimizer step"


@dataclass(frozen=True)
class MemoryRow:
    name: str
    nbytes: int
    phase: str  # KEPT (always), WORKING (at the turn of forward to backward), or STEP
    how: str


@dataclass(frozen=True)
class MemoryPlan:
    config: ModelConfig
    plan: Plan  # resolved: seq and accum are set
    rows: list[MemoryRow]

    def total(self, phase: str) -> int:
        return sum(row.nbytes for row in self.rows if row.phase == phase)

    @property
    def forward_backward_peak(self) -> int:
        return self.total(KEPT) + self.total(WORKING)

    @property
    def optimizer_step_peak(self) -> int:
        return self.total(KEPT) + self.total(STEP)

    @property
    def peak(self) -> int:
        return max(self.forward_backward_peak, self.optimizer_step_peak)

    def row(self, name: str) -> MemoryRow:
        return next(row for row in self.rows if row.name == name)


def memory_plan(config: ModelConfig, plan: Plan) -> MemoryPlan:
    plan = plan.resolved(config)
    _check(config, plan)
    counts = parameter_counts(config, plan.tp, plan.dp, plan.fsdp)
    rows = _state_rows(counts, plan) + _working_rows(config, counts, plan)
    return MemoryPlan(config, plan, rows)


def _state_rows(counts: ParameterCounts, plan: Plan) -> list[MemoryRow]:
    shards = f"over tp={plan.tp} x dp={plan.dp}" if plan.fsdp else f"over tp={plan.tp} only"
    nbytes = 4 * counts.sharded
    # Gradients accumulate from one micro-batch to the next: in place without FSDP, in the
    # fp32 shards FSDP reduce-scatters into after each micro-batch.
    grads_phase = KEPT if plan.accum > 1 else STEP
    rows = [
        MemoryRow("parameters", nbytes, KEPT, f"fp32, sharded {shards}"),
        # AdamW's, as every layout that shards runs. Muon (the tiny preset's, on one device or
        # DDP) keeps one buffer for the matrices instead of two, so this is an upper bound there.
        MemoryRow("optimizer state", 2 * nbytes, KEPT, "AdamW m and v, fp32, same shards"),
        MemoryRow("gradients", nbytes, grads_phase, "fp32, same shards"),
        MemoryRow("optimizer temporaries", nbytes, STEP, "AdamW foreach's sqrt(v)"),
    ]
    if not plan.fsdp and plan.dp > 1:
        rows.append(MemoryRow("DDP buckets", nbytes, KEPT, "DDP's copy of the gradients"))
    return rows


def _working_rows(config, counts: ParameterCounts, plan: Plan) -> list[MemoryRow]:
    c, b, tp, seq = COMPUTE_BYTES[plan.precision], plan.mbs, plan.tp, plan.seq
    rows = []
    dtype = "fp32" if c == 4 else plan.precision
    if c < 4 and not plan.fsdp:
        held = "autocast's cache until forward ends" + ("" if plan.ac else ", then autograd")
        rows.append(
            MemoryRow("compute copies", c * counts.cast, WORKING, f"weight casts, in {held}")
        )
    if plan.fsdp:
        gathered = c * (counts.root + 2 * counts.block)
        how = f"{dtype} all-gathers: embeddings, a block, the next"
        rows.append(MemoryRow("gathered parameters", gathered, WORKING, how))
        grads = c * (counts.root + counts.block) + 4 * counts.block_padded
        how = f"{dtype}: embeddings', a block's; its fp32 reduce-scatter input"
        rows.append(MemoryRow("unsharded gradients", grads, WORKING, how))
    elif plan.accum == 1:
        how = "fp32 gradient of the tied head, backward's first"
        rows.append(MemoryRow("first gradients", 4 * counts.word_embeddings, WORKING, how))
    residual = "fp32" if residual_bytes(plan.precision, plan.fsdp) == 4 else plan.precision
    kw = dict(fsdp=plan.fsdp, sp=plan.sp)
    split = " (split by sequence)" if plan.sp else ""
    every = 1 if plan.ac is True else plan.ac and checkpointed_every(plan.ac)
    if plan.ac == "selective-op":
        acts = selective_activation_bytes(config, b, seq, tp, plan.precision, **kw)
        how = f"each block's {residual} input{split}, kept matmul/attention outputs"
    elif every:
        acts = checkpointed_activation_bytes(config, b, seq, tp, plan.precision, every=every, **kw)
        which = "each block's" if every == 1 else f"one block in {every}: its"
        how = f"{which} {residual} input{split} + one block recomputed"
    else:
        acts = activation_bytes(config, b, seq, tp, plan.precision, **kw)
        how = f"what every block saves for backward{split}"
    rows.append(MemoryRow("activations", acts, WORKING, how))
    head = head_and_loss_bytes(config, b, seq, plan.precision, tp, fsdp=plan.fsdp)
    how = f"fused: one chunk of the rank's logits, {residual} hidden and fp32 head gradients"
    rows.append(MemoryRow("head and loss", head, WORKING, how))
    return rows


def head_and_loss_bytes(
    config: ModelConfig, batch: int, seq: int, precision: str, tp: int = 1, *, fsdp=False
) -> int:
    """The fused head and cross-entropy (geex.model.loss.linear_cross_entropy) at its peak: one
    chunk of fp32 logits and its softmax's gradient in the compute dtype, with the hidden
    states' gradient (see :func:`loss_saved_bytes`) and the head's (fp32, the rank's
    word-embedding rows). Under tensor parallel each rank works on ``padded_vocab_size / tp``
    ids."""
    vocab, d = config.padded_vocab_size // tp, config.d_model
    chunk = min(batch * seq, max(d, CHUNK_LOGITS // vocab))
    hidden_grad = loss_saved_bytes(config, batch, seq, precision, fsdp=fsdp)
    return chunk * vocab * (4 + COMPUTE_BYTES[precision]) + hidden_grad + 4 * vocab * d


def _check(config: ModelConfig, plan: Plan) -> None:
    if config.n_head % plan.tp or config.d_ffn % plan.tp:
        raise GeexError(
            f"tp={plan.tp} must divide the number of heads ({config.n_head}) and d_ffn "
            f"({config.d_ffn})"
        )
    check_divides(config, plan.tp)
    if plan.seq > config.max_seq_len:
        raise GeexError(f"seq={plan.seq} is longer than the model's {config.max_seq_len} positions")
