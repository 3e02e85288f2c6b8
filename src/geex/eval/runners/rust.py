"""Rust: ``rustc --test`` against prebuilt crates, then the test binary.

Every HumanEval-X Rust declaration imports ``rand``, ``regex`` and ``md5`` (the reference
harness builds each program inside a Cargo project that depends on them). Here the crates are
built once, offline, from Debian's packaged sources (``librust-rand-dev``,
``librust-regex-dev``, ``librust-md5-dev`` in /usr/share/cargo/registry) with the same
compiler, and each program is compiled by one ``rustc`` call that links them. Without a crate,
its bare ``use`` lines are blanked when nothing else in the program mentions it (an unused
import changes nothing); a program that does use it is "unavailable".
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from functools import cached_property
from pathlib import Path
from typing import ClassVar

from geex.eval.runners.base import Job, Runner
from geex.eval.verdicts import Judgement, MissingLibrary

DEBIAN_REGISTRY = Path("/usr/share/cargo/registry")
CRATES = {"rand": "0.8", "regex": "1", "md5": "0.7"}  # crate -> version wanted
_USE_LINE = {
    "rand": re.compile(r"^[ \t]*use rand::Rng;[ \t]*$", re.M),
    "regex": re.compile(r"^[ \t]*use regex::Regex;[ \t]*$", re.M),
    "md5": re.compile(r"^[ \t]*use md5;[ \t]*$", re.M),
}
_MENTION = {
    "rand": re.compile(r"\brand\b|\bRng\b"),
    "regex": re.compile(r"\bregex\b|\bRegex\b"),
    "md5": re.compile(r"\bmd5\b"),
}
# rand 0.8's gen_range takes one range where 0.4 (the reference's version) took two bounds.
_OLD_RAND = re.compile(
    r"error\[E0061\]: this (?:method|function) takes 1 argument but 2 arguments were supplied"
    r"\n(?:.*\n){0,6}.*gen_range"
)
_KIT_MANIFEST = """[package]
name = "geex-humanevalx-crates"
version = "0.1.0"
edition = "2021"

[lib]
path = "lib.rs"

[dependencies]
"""
_KIT_CONFIG = f"""[source.crates-io]
replace-with = "debian"

[source.debian]
directory = "{DEBIAN_REGISTRY}"

[net]
offline = true
"""


def missing_crate(crate: str) -> MissingLibrary:
    """What to do without ``crate``: the one hint for it, wherever it is found missing. Only
    the crates Geex links can be installed; any other is a sentence saying so."""
    if crate not in CRATES:
        linked = ", ".join(CRATES)
        return MissingLibrary(crate, "", f"Geex links only the crates {linked}")
    package = f"librust-{crate}-dev"
    return MissingLibrary(
        crate, package, f"apt-get install {package} && geex eval prepare --languages rust"
    )


class RustRunner(Runner):
    key = "rust"
    tools: ClassVar[dict[str, str]] = {"rustc": "rustc", "cargo": "cargo"}
    assertion = re.compile(r"assertion failed|assertion `left [!=]= right` failed")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.externs: dict[str, Path] = {}  # crate -> its .rlib, once prepared
        self.kit_error = ""
        self.kit_sources_missing: set[str] = set()  # crates whose Debian sources are absent

    @cached_property
    def sysroot_bin(self) -> Path:
        """The real compiler's folder: a rustup proxy would look for its toolchains under a
        HOME that the sandbox replaces."""
        out = subprocess.run(["rustc", "--print", "sysroot"], capture_output=True, text=True)
        return Path(out.stdout.strip()) / "bin"

    def _prepare(self) -> None:
        self.externs = {}
        rustc = self.sysroot_bin / "rustc"
        cargo = self.sysroot_bin / "cargo"
        if not cargo.exists():
            cargo = Path(shutil.which("cargo") or "cargo")
        version = subprocess.run([str(rustc), "-vV"], capture_output=True, text=True).stdout
        available = {c: v for c, v in CRATES.items() if any(DEBIAN_REGISTRY.glob(f"{c}-{v}*"))}
        missing = sorted(CRATES.keys() - available.keys())
        self.kit_sources_missing = set(missing)
        if missing:
            packages = " ".join(f"librust-{c}-dev" for c in missing)
            self.kit_error = f"crate(s) {', '.join(missing)} not found: install {packages}"
        if not available:
            return
        key = hashlib.sha256((version + repr(sorted(available.items()))).encode()).hexdigest()[:16]
        kit = self.cache_dir / f"rust-crates-{key}"
        index = kit / "externs.json"
        if not index.exists():
            self._build_kit(kit, rustc, cargo, available)
        if index.exists():
            self.externs = {c: Path(p) for c, p in json.loads(index.read_text()).items()}

    def lacks_library(self, name: str) -> bool:
        return name not in self.externs

    def note(self) -> str:
        built = ", ".join(self.externs) or "none"
        return f"crates built: {built}" + (f"; {self.kit_error}" if self.kit_error else "")

    def _build_kit(self, kit: Path, rustc: Path, cargo: Path, crates: dict[str, str]) -> None:
        (kit / ".cargo").mkdir(parents=True, exist_ok=True)
        (kit / ".cargo" / "config.toml").write_text(_KIT_CONFIG)
        manifest = _KIT_MANIFEST + "".join(f'{c} = "{v}"\n' for c, v in crates.items())
        (kit / "Cargo.toml").write_text(manifest)
        (kit / "lib.rs").write_text("")
        env = {
            "CARGO_HOME": str(kit / "cargo-home"),
            "RUSTC": str(rustc),
            "PATH": f"{self.sysroot_bin}:/usr/bin:/bin",
        }
        argv = [str(cargo), "build", "--offline", "--message-format=json"]
        outcome = self.sandbox.run(
            argv, kit, self.settings.compile_limits(wall_seconds=600), env=env
        )
        if outcome.returncode != 0:
            self.kit_error = (
                f"building the crates {', '.join(crates)} failed: {outcome.stderr[-500:]}"
            )
            return
        externs = {}
        for line in outcome.stdout.splitlines():
            if not line.startswith("{"):
                continue
            message = json.loads(line)
            name = message.get("target", {}).get("name")
            if message.get("reason") == "compiler-artifact" and name in crates:
                externs[name] = next(f for f in message["filenames"] if f.endswith(".rlib"))
        (kit / "externs.json").write_text(json.dumps(externs))

    def judge(self, program: str, job: Job) -> Judgement:
        notes = []
        for crate in CRATES:
            if crate in self.externs:
                continue
            bare = _USE_LINE[crate].sub("", program)
            if _MENTION[crate].search(bare):
                if crate in self.kit_sources_missing:
                    return missing_crate(crate).verdict()
                # The sources are there and building them failed: nothing to install.
                return self.unavailable(self.kit_error or f"crate {crate} was not built")
            if bare != program:
                program = bare  # the lines stay, empty, so compiler messages keep their numbers
                notes.append(crate)
        job.write("main.rs", program)
        argv = [
            str(self.sysroot_bin / "rustc"),
            "--edition",
            "2021",
            "--test",
            "main.rs",
            "-o",
            "main_test",
            "-C",
            "debuginfo=0",
        ]
        for crate, rlib in self.externs.items():
            argv += ["--extern", f"{crate}={rlib}", "-L", f"dependency={rlib.parent}"]
        built = self.compile(argv, job)
        if built.returncode != 0:
            if _OLD_RAND.search(built.stderr):
                return self.unavailable(
                    "calls rand 0.4's gen_range(low, high); the rand crate here is 0.8"
                )
            return self.compile_failed(built)
        judgement = self.run_tests(["./main_test"], job, compile_seconds=built.seconds)
        if notes:
            note = f"unused `use` of unavailable crate(s) {', '.join(notes)} blanked"
            detail = f"{judgement.detail}; {note}" if judgement.detail else note
            judgement = Judgement(judgement.verdict, detail, judgement.stdout, judgement.stderr,
                                  judgement.compile_seconds, judgement.run_seconds)  # fmt: skip
        return judgement
