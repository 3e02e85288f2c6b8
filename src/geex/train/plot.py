"""Pictures of a training run: ``metrics.jsonl`` drawn as PNGs and one self-contained report.

``geex plot RUN`` writes ``loss.png``, ``throughput.png``, ``optimizer.png`` and ``report.html``
(the same PNGs inline, with a summary table) into ``RUN/plots/``. Each figure function takes
the records and returns a matplotlib ``Figure``, so other reports can reuse them. Figures are
drawn on matplotlib's Agg canvas through its object API, never pyplot: no display is needed
and no figure outlives its caller.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import statistics
import warnings
from pathlib import Path

import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from geex.errors import GeexError

METRICS_FILE = "metrics.jsonl"
RAW, SMOOTH, VALIDATION = "#9ecae1", "#08519c", "#d94801"


class MetricsWarning(UserWarning):
    """A line of ``metrics.jsonl`` was skipped."""


def read_run_metrics(run_dir: str | Path) -> list[dict]:
    """The records of ``RUN/metrics.jsonl``, in order.

    A killed run can leave its last line half-written: that line is skipped with a
    :class:`MetricsWarning`. An unreadable line anywhere else is an error.
    """
    folder = Path(run_dir)
    if not folder.is_dir():
        raise GeexError(f"run folder {folder} does not exist")
    path = folder / METRICS_FILE
    if not path.is_file():
        raise GeexError(f"{path} does not exist: is {folder} a `geex train` run folder?")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise GeexError(f"cannot read {path}: {err}") from None
    numbered = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    records = []
    for n, line in numbered:
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if n == numbered[-1][0]:
                warnings.warn(
                    f"{path}:{n}: skipped a half-written last line", MetricsWarning, stacklevel=2
                )
                continue
            raise GeexError(f"{path}:{n} is not a JSON record ({err})") from None
        if not isinstance(record, dict) or not {"step", "loss"} <= record.keys():
            raise GeexError(f"{path}:{n} is not a training step: it needs 'step' and 'loss'")
        wrong = [key for key, value in record.items()
                 if key in NUMERIC_FIELDS and not _is_number(key, value)]  # fmt: skip
        if wrong:
            raise GeexError(f"{path}:{n}: {wrong[0]!r} must be a number, got {record[wrong[0]]!r}")
        records.append(record)
    if not records:
        raise GeexError(f"{path} holds no steps yet")
    return records


# The fields the figures read as numbers: "step" a whole one, "loss" any, the others may be
# null (no MFU on an unknown device).
NUMERIC_FIELDS = frozenset({"step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "mfu",
                            "loss_scale", "step_time"})  # fmt: skip


def _is_number(key: str, value) -> bool:
    if value is None:
        return key not in ("step", "loss")
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if key == "step" else isinstance(value, (int, float))


def smoothing_window(steps: int) -> int:
    """The default window: a twenty-fifth of the run, at most 101 steps."""
    return min(101, max(1, steps // 25))


def smoothed(values: list[float], window: int | None = None) -> list[float]:
    """Centred moving average, ``window // 2`` steps on each side (fewer at the ends). Centred,
    so a falling loss is not drawn late as a trailing average would draw it."""
    half = (window or smoothing_window(len(values))) // 2
    sums = [0.0]
    for value in values:
        sums.append(sums[-1] + value)
    out = []
    for i in range(len(values)):
        lo, hi = max(0, i - half), min(len(values), i + half + 1)
        out.append((sums[hi] - sums[lo]) / (hi - lo))
    return out


def _raw_and_smoothed(axes, steps: list[int], values: list[float], label: str) -> None:
    """A thin raw line under its moving average; a short run is drawn raw, boldly."""
    if smoothing_window(len(values)) == 1:
        axes.plot(steps, values, color=SMOOTH, linewidth=1.5, label=label)
        return
    axes.plot(steps, values, color=RAW, linewidth=0.8, label=label)
    axes.plot(steps, smoothed(values), color=SMOOTH, linewidth=2, label="smoothed")


# -- figures -------------------------------------------------------------------------------


def loss_figure(records: list[dict], title: str | None = None) -> Figure:
    """Training loss per step (raw and smoothed); validation loss per language when logged,
    and bits per byte per language beside it where the data's tokenizer gave byte counts."""
    validations = _validations(records)
    bits_per_byte = _validations(records, "val_bpb")
    figure, axes = _figure(1 + bool(validations) + bool(bits_per_byte), title)
    steps, losses = _finite(records, "loss")
    train = axes[0]
    _raw_and_smoothed(train, steps, losses, "training loss")
    if "all" in validations:
        train.plot(*validations["all"], "o-", color=VALIDATION, markersize=3, label="validation")
    _label(train, "training loss", "loss (nats per token)")
    _tokens_axis(train, records)
    if validations:
        panel = axes[1]
        _per_language(panel, validations)
        _label(panel, "validation loss per language", "loss (nats per token)")
    if bits_per_byte:
        _per_language(axes[-1], bits_per_byte)
        _label(axes[-1], "validation bits per byte per language", "bits per byte of text")
    return figure


def _per_language(panel, curves: dict[str, tuple[list[int], list[float]]]) -> None:
    for language, (steps, values) in sorted(curves.items()):
        style = dict(color="black", linestyle="--", linewidth=2) if language == "all" else {}
        panel.plot(steps, values, marker="o", markersize=3, label=language, **style)


def throughput_figure(records: list[dict], title: str | None = None) -> Figure:
    """Tokens per second each step, and model FLOPs utilisation where the device is known."""
    mfu_steps, mfu = _finite(records, "mfu")
    figure, axes = _figure(2 if mfu else 1, title)
    steps, speed = _finite(records, "tokens_per_s")
    speed_axes = axes[0]
    speed_axes.plot(steps, speed, color=SMOOTH, linewidth=1)
    if speed:
        median = statistics.median(speed)
        speed_axes.axhline(median, color=VALIDATION, linestyle="--", label=f"median {median:,.0f}")
    speed_axes.set_ylim(bottom=0)
    speed_axes.yaxis.set_major_formatter(FuncFormatter(_compact))
    _label(speed_axes, "throughput", "tokens / s (all ranks)")
    if mfu:
        mfu_axes = axes[1]
        percent = [100 * value for value in mfu]
        mfu_axes.plot(mfu_steps, percent, color=SMOOTH, linewidth=1)
        median = statistics.median(percent)
        mfu_axes.axhline(median, color=VALIDATION, linestyle="--", label=f"median {median:.1f}%")
        mfu_axes.set_ylim(bottom=0)
        _label(mfu_axes, "model FLOPs utilisation", "MFU (%)")
    return figure


def optimizer_figure(
    records: list[dict], title: str | None = None, grad_clip: float | None = None
) -> Figure:
    """Learning rate, gradient norm (log scale) and, under fp16, the loss scale."""
    scaled = any("loss_scale" in record for record in records)
    figure, axes = _figure(3 if scaled else 2, title)
    steps, lr = _finite(records, "lr")
    axes[0].plot(steps, lr, color=SMOOTH)
    axes[0].ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    _label(axes[0], "learning rate", "lr", legend=False)

    norm_axes = axes[1]
    steps, norms = _finite(records, "grad_norm", positive=True)
    _raw_and_smoothed(norm_axes, steps, norms, "gradient norm")
    if grad_clip:
        norm_axes.axhline(grad_clip, color="gray", linestyle=":", label=f"clip {grad_clip:g}")
    if norms:
        norm_axes.set_yscale("log")
        norm_axes.yaxis.set_major_formatter(FuncFormatter(_compact))
        norm_axes.yaxis.set_minor_formatter(FuncFormatter(_compact_if_few_decades(norms)))
    _label(norm_axes, "gradient norm (before clipping)", "global L2 norm")

    if scaled:
        scale_axes = axes[2]
        steps, scales = _finite(records, "loss_scale", positive=True)
        scale_axes.step(steps, scales, where="post", color=SMOOTH, label="loss scale")
        skipped = [r for r in records if r.get("skipped") and "loss_scale" in r]
        if skipped:
            scale_axes.plot(
                [r["step"] for r in skipped],
                [r["loss_scale"] for r in skipped],
                "x",
                color="red",
                label=f"{len(skipped)} skipped",
            )
        scale_axes.set_yscale("log", base=2)
        _label(scale_axes, "fp16 loss scale", "scale")
    return figure


def _figure(panels: int, title: str | None) -> tuple[Figure, list]:
    figure = Figure(figsize=(6.4 * panels, 4.4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = [figure.add_subplot(1, panels, i + 1) for i in range(panels)]
    if title:
        figure.suptitle(title)
    return figure, axes


def _label(axes, title: str, ylabel: str, legend: bool = True) -> None:
    axes.set_title(title)
    axes.set_xlabel("step")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel(ylabel)
    axes.grid(True, which="major", alpha=0.3)
    if legend and axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize="small")


def _tokens_axis(axes, records: list[dict]) -> None:
    """Tokens seen along the top: every step trains on the same number of tokens."""
    first = records[0]
    if "tokens" not in first:
        return
    per_step = first["tokens"] / (first["step"] + 1)
    if per_step <= 0:
        return
    top = axes.secondary_xaxis("top", functions=(lambda s: s * per_step, lambda t: t / per_step))
    top.xaxis.set_major_formatter(FuncFormatter(_compact))
    top.set_xlabel("tokens")


def _compact(value: float, _position=None) -> str:
    """0, 0.5, 120k, 12.5M: tick labels without trailing zeros or powers of ten."""
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.3g}"


def _compact_if_few_decades(values: list[float]):
    """Label the minor ticks 2, 3 and 5 (times a power of ten) of a log axis when the values
    span under two decades, where major ticks alone are too few to read."""
    few = max(values) / min(values) < 100

    def label(value: float, _position=None) -> str:
        mantissa = round(value / 10 ** math.floor(math.log10(value)), 6)
        return _compact(value) if few and mantissa in (2, 3, 5) else ""

    return label


def _finite(records: list[dict], key: str, positive: bool = False):
    steps, values = [], []
    for record in records:
        value = record.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value) and (value > 0 or not positive):
            steps.append(record["step"])
            values.append(float(value))
    return steps, values


def _validations(
    records: list[dict], key: str = "val_loss"
) -> dict[str, tuple[list[int], list[float]]]:
    """{language: (steps, values)} of ``key`` (the loss, or ``val_bpb``) from the records
    that carry a validation."""
    curves: dict[str, tuple[list[int], list[float]]] = {}
    for record in records:
        for language, loss in (record.get(key) or {}).items():
            steps, losses = curves.setdefault(language, ([], []))
            steps.append(record["step"])
            losses.append(loss)
    return curves


# -- the run -------------------------------------------------------------------------------


def plot_run(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Draw the run's figures as PNGs and ``report.html`` into ``out_dir`` (default
    ``RUN/plots``); return the paths written."""
    run_dir = Path(run_dir)
    records = read_run_metrics(run_dir)
    config = _run_config(run_dir)
    title = run_title(run_dir, config)
    out = Path(out_dir) if out_dir is not None else run_dir / "plots"
    out.mkdir(parents=True, exist_ok=True)
    figures = {
        "loss": loss_figure(records, title),
        "throughput": throughput_figure(records, title),
        "optimizer": optimizer_figure(
            records, title, grad_clip=(config.get("optim") or {}).get("grad_clip")
        ),
    }
    written, images = [], {}
    for name, figure in figures.items():
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110)
        path = out / f"{name}.png"
        path.write_bytes(buffer.getvalue())
        written.append(path)
        images[name] = buffer.getvalue()
    report = out / "report.html"
    report.write_text(report_html(title, run_summary(records), images), encoding="utf-8")
    return [*written, report]


def run_summary(records: list[dict]) -> dict[str, str]:
    """The report's table: what a reader asks first about a run."""
    last = records[-1]
    summary = {
        "steps": f"{last['step'] + 1:,}",
        "tokens": f"{last['tokens']:,}" if "tokens" in last else "unknown",
        "final loss": f"{last['loss']:.4f}",
    }
    _, losses = _finite(records, "loss")
    if smoothing_window(len(losses)) > 1:
        summary["final loss, smoothed"] = f"{smoothed(losses)[-1]:.4f}"
    for language, (steps, val) in sorted(_validations(records).items()):
        best = min(range(len(val)), key=val.__getitem__)
        summary[f"best validation loss, {language}"] = f"{val[best]:.4f} at step {steps[best]}"
    if "all" in (bits_per_byte := _validations(records, "val_bpb")):
        steps, bpb = bits_per_byte["all"]
        summary["final validation bits per byte"] = f"{bpb[-1]:.4f} at step {steps[-1]}"
    _, speed = _finite(records, "tokens_per_s")
    if speed:
        summary["median tokens/s"] = f"{statistics.median(speed):,.0f}"
    _, mfu = _finite(records, "mfu")
    summary["median MFU"] = f"{100 * statistics.median(mfu):.1f}%" if mfu else "unknown device"
    _, times = _finite(records, "step_time")
    if times:
        summary["training time"] = _duration(sum(times))
    skipped = sum(1 for record in records if record.get("skipped"))
    if any("skipped" in record for record in records):
        summary["steps skipped (fp16 overflow)"] = str(skipped)
    return summary


def report_html(title: str, summary: dict[str, str], images: dict[str, bytes]) -> str:
    """One HTML file with everything inline: no script, stylesheet or image is fetched."""
    rows = "\n".join(
        f"<tr><th>{html.escape(key)}</th><td>{html.escape(value)}</td></tr>"
        for key, value in summary.items()
    )
    figures = "\n".join(
        f'<figure><img alt="{html.escape(name)}" '
        f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}"></figure>'
        for name, png in images.items()
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
th, td {{ text-align: left; padding: 0.25em 1em; border-bottom: 1px solid #ddd; }}
img {{ max-width: 100%; }}
figure {{ margin: 0 0 1.5em 0; }}
</style></head>
<body>
<h1>{html.escape(title)}</h1>
<table>
{rows}
</table>
{figures}
</body></html>
"""


def run_title(run_dir: Path, config: dict | None = None) -> str:
    """``run-name: preset 1.3b, bf16, tp 8, FSDP`` from the run's config.yaml when present."""
    config = _run_config(run_dir) if config is None else config
    parts = []
    if config.get("init_from"):
        parts.append(f"fine-tuned from {Path(config['init_from']).name}")
    elif config.get("preset"):
        parts.append(f"preset {config['preset']}")
    if config.get("precision"):
        parts.append(str(config["precision"]))
    parallel = config.get("parallel") or {}
    if (parallel.get("tp") or 1) > 1:
        parts.append(f"tp {parallel['tp']}")
    if parallel.get("fsdp"):
        parts.append("FSDP")
    name = run_dir.resolve().name
    return f"{name}: {', '.join(parts)}" if parts else name


def _run_config(run_dir: Path) -> dict:
    """The run's config.yaml as a dict; empty when missing or unreadable (titles only)."""
    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return config if isinstance(config, dict) else {}


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"
