"""C++: ``g++ -std=c++11``, then the binary, as the reference harness does.

Speed: a precompiled header of the reference's own preamble (the nine headers every
HumanEval-X program includes anyway) is force-included, which cuts most of the parsing; it
is skipped for a program that defines macros before those includes, since the header would
then be read under other definitions. OpenSSL is linked when the program includes it (the
reference links it for CPP/162, the one problem that does). The gold linker, where binutils
has it, links the same libraries in a third of the time. A header the benchmark includes and
this machine lacks makes the sample "unavailable" (``geex.eval.libraries``).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from functools import cached_property
from pathlib import Path
from typing import ClassVar

from geex.eval.programs import CPP_PREAMBLE
from geex.eval.runners.base import Job, Runner
from geex.eval.verdicts import Judgement

STANDARD = "-std=c++11"
_INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.M)
_MACRO = re.compile(r"^\s*#\s*(define|undef)\b", re.M)


class CppRunner(Runner):
    key = "cpp"
    tools: ClassVar[dict[str, str]] = {"g++": "g++"}
    assertion = re.compile(r"Assertion .* failed")

    _header: Path | None = None
    _gold = False

    def _prepare(self) -> None:
        if self.settings.naive:
            return
        self._gold = shutil.which("ld.gold") is not None
        version = subprocess.run(["g++", "-dumpfullversion", "-v"], capture_output=True, text=True)
        key = hashlib.sha256((version.stdout + version.stderr + STANDARD).encode()).hexdigest()[:16]
        folder = self.cache_dir / f"pch-{key}"
        header = folder / "humanevalx.h"
        if not (folder / "humanevalx.h.gch").exists():
            folder.mkdir(parents=True, exist_ok=True)
            header.write_text("\n".join(CPP_PREAMBLE) + "\n")
            partial = folder / f"partial-{id(self)}.gch"
            argv = ["g++", STANDARD, "-x", "c++-header", str(header), "-o", str(partial)]
            outcome = self.sandbox.run(argv, folder, self.settings.compile_limits())
            if outcome.returncode != 0:
                return  # judged without the header: slower, same verdicts
            partial.rename(folder / "humanevalx.h.gch")
        self._header = header

    def note(self) -> str:
        if self.settings.naive:
            return ""
        return "precompiled header ready" if self._header else "no precompiled header"

    @cached_property
    def include_dirs(self) -> list[Path]:
        """The folders g++ looks for ``#include <...>`` headers in, as it lists them."""
        done = subprocess.run(
            ["g++", STANDARD, "-x", "c++", "-E", "-v", "-"],
            input="", capture_output=True, text=True,
        )  # fmt: skip
        listed = done.stderr.partition("#include <...> search starts here:")[2]
        listed = listed.partition("End of search list.")[0]
        folders = [Path(line.strip()) for line in listed.splitlines() if line.strip()]
        return folders or [Path("/usr/local/include"), Path("/usr/include")]

    def lacks_library(self, name: str) -> bool:
        """Whether no include folder has ``name``'s library: its first folder
        ("boost" of "boost/any.hpp"), or the header itself where it sits at the top. With
        the folder there, a header missing under it is the program's mistake."""
        library = name.split("/")[0]
        return not any((folder / library).exists() for folder in self.include_dirs)

    def _can_use_header(self, program: str) -> bool:
        if self._header is None:
            return False
        last_preamble = max(
            (m.start() for m in _INCLUDE.finditer(program) if f"#include<{m[1]}>" in CPP_PREAMBLE),
            default=-1,
        )
        first_macro = _MACRO.search(program)
        return first_macro is None or first_macro.start() > last_preamble

    def judge(self, program: str, job: Job) -> Judgement:
        job.write("test.cpp", program)
        argv = ["g++", STANDARD]
        if self._can_use_header(program):
            argv += ["-include", str(self._header)]
        argv += ["test.cpp", "-o", "test"]
        if self._gold:
            argv.append("-fuse-ld=gold")
        if "openssl/" in program:
            argv += ["-lcrypto", "-lssl"]
        built = self.compile(argv, job)
        if built.returncode != 0:
            return self.compile_failed(built)
        return self.run_tests(["./test"], job, compile_seconds=built.seconds)
