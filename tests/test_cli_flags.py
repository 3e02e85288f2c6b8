"""Flags made from config dataclasses: every field is a flag or marked not one, a flag lands in
its field as from_dict would put it, and a new field is a new flag with no other edit.

`pytest tests/test_cli_flags.py`
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Literal

import pytest

from geex.cli import build_parser, main
from geex.cli.flags import add_config_flags, config_flags, config_from_args, nested
from geex.config import comma_list, field_types, flag_spec, from_dict, key_value, megabytes, option
from geex.data.config import DataConfig
from geex.errors import ConfigError
from geex.eval.backends import Sampling
from geex.eval.evaluator import EvalConfig
from geex.model.load_options import LoadOptions
from geex.model.sampling import SamplingConfig
from geex.pipeline.config import RunConfig, run_config
from geex.serve.serve_limits import ServeLimits
from geex.train.config import TrainConfig

# Each converted subcommand and the config its flags fill.
SUBCOMMANDS = [
    (["data"], DataConfig),
    (["train"], TrainConfig),
    (["run"], RunConfig),
    (["eval", "embedded"], Sampling),
    (["eval", "humanevalx"], Sampling),
    (["eval", "embedded"], EvalConfig),
    (["eval", "humanevalx"], EvalConfig),
    (["generate"], SamplingConfig),
    (["generate"], LoadOptions),
    (["serve"], LoadOptions),
    (["serve"], ServeLimits),
    (["eval", "embedded"], LoadOptions),
]


def subparser(words):
    parser = build_parser()
    for word in words:
        choices = next(a for a in parser._actions if a.choices and word in a.choices).choices
        parser = choices[word]
    return parser


def leaf_fields(cls, where=""):
    """(dotted name, field) of every field, nested configs' fields instead of the configs."""
    types = field_types(cls)
    for f in dataclasses.fields(cls):
        path = f"{where}.{f.name}" if where else f.name
        if dataclasses.is_dataclass(types[f.name]):
            yield from leaf_fields(types[f.name], path)
        else:
            yield path, f


@pytest.mark.parametrize(("words", "cls"), SUBCOMMANDS, ids=lambda x: getattr(x, "__name__", x))
def test_every_field_is_a_flag_of_its_subcommand_or_marked_not_one(words, cls):
    parser = subparser(words)
    flags = {flag.path: flag for flag in config_flags(cls)}
    for path, f in leaf_fields(cls):
        spec = flag_spec(f)
        if path in flags:
            for name in flags[path].names:
                assert parser._option_string_actions[name].dest == path
        else:  # off the command line on purpose, or some of its keys are (subflags)
            assert not spec.flag or spec.subflags, f"{path} is neither a flag nor marked"
    for path in flags:
        assert path.split(".")[0] in {f.name for f in dataclasses.fields(cls)}


# A value for every flag field, unlike its default; the words give it on the command line.
WORDS = {
    megabytes: (["3"], 3 * 2**20),
    comma_list: (["python,go"], ["python", "go"]),
    key_value: (["account=me", "--sbatch-arg", "qos=high"], {"account": "me", "qos": "high"}),
}
MEANINGFUL = {  # values that must mean something to the config's own checks
    "budget": (["5m"], "5m"),
    "eval.languages": (["python", "go"], ["python", "go"]),
    "train.preset": (["small"], "small"),
    "preset": (["small"], "small"),
    "validation_fraction": (["0.25"], 0.25),
    "fim_spm_rate": (["0.25"], 0.25),  # the sampled 0.5 is its default
    "language_weights": (["py=2", "--language-weight", "go=0.5"], {"python": 2.0, "go": 0.5}),
    "cors_origins": (["http://a.test", "--cors-origin", "*"], ("http://a.test", "*")),
    "parallel.activation_checkpointing": (["selective-op"], "selective-op"),
}


def sample_value(flag, default):
    """The words after the flag and the field value they give."""
    if flag.path in MEANINGFUL:
        return MEANINGFUL[flag.path]
    if flag.spec.parse:
        return WORDS[flag.spec.parse]
    if flag.annotation is bool:
        return [], not default
    if flag.spec.choices:
        return [flag.spec.choices[-1]], flag.spec.choices[-1]
    kind = typing.get_args(flag.annotation)[0] if optional(flag.annotation) else flag.annotation
    origin = typing.get_origin(kind)
    if origin is tuple:
        return ["0.5", "0.75"], (0.5, 0.75)
    if origin is list:
        return ["a", "b"], ["a", "b"]
    return {int: (["7"], 7), float: (["0.5"], 0.5), str: (["x7"], "x7")}[kind]


def optional(annotation) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def flags_and_values(cls):
    defaults = {path: f.default for path, f in leaf_fields(cls)}
    argv, values = [], {}
    for flag in config_flags(cls):
        words, value = sample_value(flag, defaults.get(flag.path))
        argv += [flag.names[0], *words]
        values[flag.path] = value
    return argv, values


def dotted(config, path):
    for name in path.split("."):
        config = config[name] if isinstance(config, dict) else getattr(config, name)
    return config


@pytest.mark.parametrize(
    ("words", "cls", "read", "library"),
    [
        (
            ["data", "src"],
            DataConfig,
            "geex.cli.data",
            lambda fields: from_dict(DataConfig, {**fields, "sources": ["src"]}),
        ),
        (["train"], TrainConfig, "geex.cli.train", TrainConfig.from_dict),
        (["run"], RunConfig, "geex.cli.run", run_config),
        (["eval", "embedded"], Sampling, None, lambda fields: from_dict(Sampling, fields)),
        (["eval", "embedded"], EvalConfig, None, lambda fields: from_dict(EvalConfig, fields)),
        (
            ["generate", "--model", "m"],
            SamplingConfig,
            None,
            lambda fields: from_dict(SamplingConfig, fields),
        ),
        (
            ["serve", "--model", "m"],
            LoadOptions,
            None,
            lambda fields: from_dict(LoadOptions, fields),
        ),
        (
            ["serve", "--model", "m"],
            ServeLimits,
            None,
            lambda fields: from_dict(ServeLimits, fields),
        ),
    ],
    ids=[
        "data",
        "train",
        "run",
        "eval-sampling",
        "eval-judging",
        "generate",
        "serve-loading",
        "serve-limits",
    ],
)
def test_every_flag_gives_the_config_from_dict_gives(words, cls, read, library):
    argv, values = flags_and_values(cls)
    args = build_parser().parse_args([*words, *argv])
    if read:
        config = __import__(read, fromlist=["config_from_args"]).config_from_args(args)
    else:
        config = config_from_args(cls, args)
    assert config == library(nested(values))
    for path, value in values.items():
        assert dotted(config, path) == value, path


def test_the_negation_flag_sets_its_value_and_excludes_the_flag(capsys):
    from geex.cli.data import config_from_args as data_config

    args = build_parser().parse_args(["data", "src", "--out", "o", "--no-dedup"])
    assert data_config(args).dedup == "none"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["data", "--out", "o", "--no-dedup", "--dedup", "near"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_a_flag_not_given_leaves_the_file_value(tmp_path):
    from geex.cli.train import config_from_args as train_config

    path = tmp_path / "train.yaml"
    path.write_text("seed: 5\noptim: {lr: 0.01, warmup_steps: 3}\n")
    args = build_parser().parse_args(["train", "--config", str(path), "--lr", "0.02"])
    config = train_config(args)
    assert (config.seed, config.optim.lr, config.optim.warmup_steps) == (5, 0.02, 3)


def test_a_bad_flag_word_is_one_line_naming_the_flag(capsys):
    with pytest.raises(SystemExit):
        main(["data", "--out", "o", "--sbatch-arg", "account"])
    assert "argument --sbatch-arg: wants KEY=VALUE; got 'account'" in capsys.readouterr().err


def test_the_filter_choices_are_the_filter_presets():
    from geex.data.config import FILTER_NAMES
    from geex.data.filters import FILTER_PRESETS

    assert tuple(FILTER_PRESETS) == FILTER_NAMES


# --- a config the project does not have: a field with metadata is a flag, nothing else -----


@dataclass
class Knobs:
    depth: int = option(2, help="how deep")


@dataclass
class Toy:
    name: str = option(help="what to call it")
    rate: float = option(0.1, flags=("--rate", "-r"))
    shape: Literal["round", "square"] = "round"
    loud: bool = option(False, help="say it twice")
    knobs: Knobs = field(default_factory=Knobs)
    hidden: dict = option(default_factory=dict, flag=False)


ToyPlus = dataclasses.make_dataclass(
    "ToyPlus",
    [("colour", str, option("red", choices=("red", "blue"), help="the one new field"))],
    bases=(Toy,),
)


def toy_parser(cls):
    parser = argparse.ArgumentParser(prog="toy")
    add_config_flags(parser, cls)
    return parser


def test_a_config_becomes_flags_with_help_required_and_nested_fields():
    parser = toy_parser(Toy)
    text = parser.format_help()
    assert "--name NAME" in text and "what to call it" in text and "--depth DEPTH" in text
    assert "--hidden" not in text
    assert "--shape {round,square}" in text
    argv = ["--name", "a", "--depth", "4", "--loud", "-r", "0.5", "--shape", "square"]
    toy = config_from_args(Toy, parser.parse_args(argv))
    assert toy == Toy(name="a", rate=0.5, shape="square", loud=True, knobs=Knobs(depth=4))
    with pytest.raises(SystemExit):
        parser.parse_args([])  # --name is required: the field has no default


def test_a_new_field_with_metadata_is_a_flag_and_a_config_key_with_no_other_edit():
    parser = toy_parser(ToyPlus)
    assert "the one new field" in parser.format_help()
    toy = config_from_args(ToyPlus, parser.parse_args(["--name", "a", "--colour", "blue"]))
    assert toy.colour == "blue" and toy == from_dict(ToyPlus, {"name": "a", "colour": "blue"})
    with pytest.raises(SystemExit):
        parser.parse_args(["--name", "a", "--colour", "green"])
    with pytest.raises(ConfigError, match="did you mean 'colour'"):
        from_dict(ToyPlus, {"name": "a", "color": "blue"})
    with pytest.raises(ConfigError, match="'colour' must be one of red, blue"):
        from_dict(ToyPlus, {"name": "a", "colour": "green"})


def test_serves_api_key_comes_from_the_environment_unless_the_flag_gives_one(monkeypatch):
    monkeypatch.setenv("GEEX_API_KEY", "from-env")
    args = build_parser().parse_args(["serve", "--model", "m"])
    assert config_from_args(ServeLimits, args).api_key == "from-env"
    args = build_parser().parse_args(["serve", "--model", "m", "--api-key", "from-flag"])
    assert config_from_args(ServeLimits, args).api_key == "from-flag"
    monkeypatch.delenv("GEEX_API_KEY")
    args = build_parser().parse_args(["serve", "--model", "m"])
    assert config_from_args(ServeLimits, args).api_key is None
