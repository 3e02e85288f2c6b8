"""The language registry holds CodeGeeX's exact tags and detects files; run: pytest tests/test_languages.py"""

from pathlib import Path

import pytest

from geex import languages
from geex.errors import GeexError
from geex.languages import (
    CODEGEEX_LANGUAGES,
    HUMANEVALX,
    LANGUAGES,
    Language,
    _index_by,
    detect_language,
    get_language,
    shebang_interpreter,
    strip_tag,
    tag_line,
)

# Written out by hand from the LANGUAGE_TAG tables of THUDM/CodeGeeX (codegeex/data/data_utils.py)
# and THUDM/CodeGeeX2 (evaluation/utils.py), not read back from the module under test.
CODEGEEX_TAGS = {
    "cpp": "// language: C++",
    "c": "// language: C",
    "csharp": "// language: C#",
    "cuda": "// language: Cuda",
    "objective-c": "// language: Objective-C",
    "objective-cpp": "// language: Objective-C++",
    "python": "# language: Python",
    "perl": "# language: Perl",
    "java": "// language: Java",
    "scala": "// language: Scala",
    "tex": "% language: TeX",
    "html": "<!--language: HTML-->",
    "php": "// language: PHP",
    "javascript": "// language: JavaScript",
    "typescript": "// language: TypeScript",
    "go": "// language: Go",
    "shell": "# language: Shell",
    "rust": "// language: Rust",
    "css": "/* language: CSS */",
    "sql": "-- language: SQL",
    "kotlin": "// language: Kotlin",
    "pascal": "// language: Pascal",
    "r": "# language: R",
    "fortran": "!language: Fortran",
    "lean": "-- language: Lean",
}
CODEGEEX2_TAGS = {
    "lua": "// language: Lua",
    "swift": "// language: swift",
    "dart": "// language: Dart",
    "ruby": "# language: Ruby",
    "haskell": "-- language: Haskell",
    "julia": "# language: Julia",
    "matlab": "% language: Matlab",
    "delphi": "{language: Delphi}",
    "isabelle": "(*language: Isabelle*)",
    "standard-ml": "(*language:Standard ML*)",
    "visual-basic": "' language: Visual Basic",
    "markdown": "<!--language: Markdown-->",
    "vue": "<!--language: Vue-->",
    "dockerfile": "# language: Dockerfile",
    "makefile": "# language: Makefile",
    "cmake": "# language: CMake",
    "fsharp": "// language: F#",
}


@pytest.mark.parametrize("key, tag", [*CODEGEEX_TAGS.items(), *CODEGEEX2_TAGS.items()])
def test_codegeex_language_has_its_exact_tag(key, tag):
    assert LANGUAGES[key].tag == tag


def test_codegeex_trained_on_23_distinct_languages_in_table_order():
    assert len(CODEGEEX_LANGUAGES) == 23
    assert len(set(CODEGEEX_LANGUAGES)) == 23
    assert set(CODEGEEX_LANGUAGES) <= set(LANGUAGES)
    # The released table minus Objective-C++ (counted with Objective-C) and Perl (added later).
    released = [key for key in CODEGEEX_TAGS if key not in ("objective-cpp", "perl")]
    assert list(CODEGEEX_LANGUAGES) == released


def test_registry_reaches_beyond_the_training_languages():
    assert len(LANGUAGES) > 23
    assert list(LANGUAGES)[:6] == ["cpp", "c", "csharp", "cuda", "objective-c", "objective-cpp"]


def test_keys_match_their_entries():
    assert all(key == language.key for key, language in LANGUAGES.items())


def test_no_extension_maps_to_two_languages():
    owners: dict[str, str] = {}
    for language in LANGUAGES.values():
        for ext in language.extensions:
            assert ext not in owners, f"{ext} in {owners.get(ext)} and {language.key}"
            owners[ext] = language.key
            assert ext.startswith(".") and ext == ext.lower()


@pytest.mark.parametrize("field", ["filenames", "interpreters"])
def test_no_filename_or_interpreter_maps_to_two_languages(field):
    words = [word for language in LANGUAGES.values() for word in getattr(language, field)]
    assert len(words) == len(set(words))


def test_names_aliases_and_tags_are_unambiguous():
    owners: dict[str, str] = {}
    for language in LANGUAGES.values():
        for word in {language.key, language.name.lower(), *language.aliases}:
            assert owners.setdefault(word, language.key) == language.key, word
    tags = [language.tag for language in LANGUAGES.values()]
    assert len(tags) == len(set(tags))


def test_tags_are_one_comment_line_naming_the_language():
    for language in LANGUAGES.values():
        assert "\n" not in language.tag
        assert "language:" in language.tag
        if language.key == "swift":  # CodeGeeX2 writes this tag in lower case
            assert language.name.lower() in language.tag
        else:
            assert language.name in language.tag


def test_duplicate_claims_are_rejected():
    a = Language("a", "A", "# language: A", (".x",))
    b = Language("b", "B", "# language: B", (".x",))
    with pytest.raises(ValueError, match=r"'\.x'.*'a'.*'b'"):
        _index_by([a, b], lambda lang: lang.extensions)


def test_entries_must_be_lowercase():
    with pytest.raises(ValueError, match="lowercase"):
        Language("a", "A", "# language: A", (".PY",))
    with pytest.raises(ValueError, match="tag"):
        Language("a", "A", "A", (".a",))


@pytest.mark.parametrize(
    "path, key",
    [
        ("src/main.py", "python"),
        ("stubs/os.pyi", "python"),
        ("a/b/Main.JAVA", "java"),
        ("lib.h", "c"),
        ("widget.hpp", "cpp"),
        ("View.m", "objective-c"),
        ("View.mm", "objective-cpp"),
        ("kernel.cu", "cuda"),
        ("analysis.R", "r"),
        ("boot.S", "assembly"),
        ("index.d.ts", "typescript"),
        ("component.tsx", "typescript"),
        ("jquery.min.js", "javascript"),
        ("my.module.test.rs", "rust"),
        ("style.css", "css"),
        ("page.html", "html"),
        ("solver.f90", "fortran"),
        ("Proof.lean", "lean"),
        ("C:\\proj\\cmd\\main.go", "go"),
        (Path("pkg") / "Program.cs", "csharp"),
    ],
)
def test_detects_by_extension(path, key):
    language = detect_language(path)
    assert language is not None and language.key == key


def test_longest_extension_wins(monkeypatch):
    # No compound extension in the table names a language of its own yet; plant one.
    monkeypatch.setitem(languages._BY_EXTENSION, ".blade.php", LANGUAGES["html"])
    assert detect_language("views/home.blade.php") is LANGUAGES["html"]
    assert detect_language("views/home.php") is LANGUAGES["php"]


@pytest.mark.parametrize(
    "path, key",
    [
        ("Makefile", "makefile"),
        ("project/GNUmakefile", "makefile"),
        ("docker/Dockerfile", "dockerfile"),
        ("CMakeLists.txt", "cmake"),
        ("Rakefile", "ruby"),
        ("Jenkinsfile", "groovy"),
        ("home/.bashrc", "shell"),
    ],
)
def test_detects_by_exact_filename(path, key):
    language = detect_language(path)
    assert language is not None and language.key == key


@pytest.mark.parametrize(
    "first_line, key",
    [
        ("#!/usr/bin/env python3", "python"),
        ("#!/usr/bin/python3.11", "python"),
        ("#!/usr/bin/env python3.12 -u", "python"),
        ("#!/bin/bash", "shell"),
        ("#! /bin/sh -e", "shell"),
        ("#!/usr/bin/env -S node --experimental-modules", "javascript"),
        ("#!/usr/bin/env -Snode --flag", "javascript"),
        ("#!/usr/bin/env -i FOO=1 ruby -w", "ruby"),
        ("#!/usr/bin/env -u HOME perl", "perl"),
        ("#!/usr/local/bin/perl5.30 -w", "perl"),
        ("#!/usr/bin/env Rscript", "r"),
        ("\ufeff#!/usr/bin/env lua5.4\r", "lua"),
    ],
)
def test_detects_by_shebang(first_line, key):
    language = detect_language("bin/tool", first_line)
    assert language is not None and language.key == key


def test_extension_wins_over_shebang():
    language = detect_language("tool.py", "#!/bin/bash")
    assert language is not None and language.key == "python"


@pytest.mark.parametrize(
    "path, first_line",
    [
        ("README", None),
        ("data.csv", None),
        ("archive.tar.gz", None),
        (".gitignore", None),
        ("dir/", None),
        ("notes.txt", "hello world"),
        ("bin/tool", "#!/usr/bin/env not-a-language"),
        ("bin/tool", "#!"),
        ("bin/tool", "#!/usr/bin/env -i"),
        ("bin/tool", ""),
    ],
)
def test_unknown_files_are_none(path, first_line):
    assert detect_language(path, first_line) is None


def test_shebang_interpreter_reads_through_env():
    assert shebang_interpreter("#!/usr/bin/env -S deno run") == "deno"
    assert shebang_interpreter("#!C:\\Python311\\Python.exe") == "python"
    assert shebang_interpreter("import os") is None


@pytest.mark.parametrize(
    "name, key",
    [
        ("python", "python"),
        ("Python", "python"),
        ("PY", "python"),
        ("c++", "cpp"),
        ("C++", "cpp"),
        ("cpp", "cpp"),
        ("js", "javascript"),
        ("JavaScript", "javascript"),
        ("golang", "go"),
        ("c#", "csharp"),
        ("cs", "csharp"),
        ("C#", "csharp"),
        ("sh", "shell"),
        ("bash", "shell"),
        ("ts", "typescript"),
        ("Objective-C++", "objective-cpp"),
        ("objc", "objective-c"),
        ("  Rust  ", "rust"),
    ],
)
def test_get_language_accepts_keys_names_and_aliases(name, key):
    assert get_language(name).key == key


def test_get_language_passes_a_language_through():
    assert get_language(LANGUAGES["go"]) is LANGUAGES["go"]


def test_get_language_error_names_the_input_and_lists_valid_keys():
    with pytest.raises(GeexError) as caught:
        get_language("cobra")
    message = str(caught.value)
    assert "'cobra'" in message
    assert ", ".join(LANGUAGES) in message


def test_tag_line_accepts_names_and_languages():
    assert tag_line("python") == "# language: Python"
    assert tag_line("C++") == "// language: C++"
    assert tag_line(LANGUAGES["html"]) == "<!--language: HTML-->"
    with pytest.raises(GeexError):
        tag_line("cobra")


@pytest.mark.parametrize("key", list(LANGUAGES))
def test_strip_tag_round_trips_every_language(key):
    language = LANGUAGES[key]
    body = "first line\n// language: C\nlast line\n"
    assert strip_tag(tag_line(language) + "\n" + body) == (language, body)
    assert strip_tag(tag_line(language) + "\r\n" + body) == (language, body)
    assert strip_tag(tag_line(language)) == (language, "")


@pytest.mark.parametrize(
    "text",
    [
        "def f():\n    pass\n",
        "# language: Python3\nprint(1)\n",
        "// language: C+\nint x;\n",
        " # language: Python\nx = 1\n",
        "x = 1\n# language: Python\n",
        "",
    ],
)
def test_strip_tag_leaves_untagged_text_alone(text):
    assert strip_tag(text) == (None, text)


def test_strip_tag_tells_prefix_tags_apart():
    language, rest = strip_tag("// language: C++\nint x;")
    assert language is LANGUAGES["cpp"] and rest == "int x;"
    language, rest = strip_tag("// language: C\nint x;")
    assert language is LANGUAGES["c"] and rest == "int x;"


@pytest.mark.parametrize(
    "humanevalx, key",
    [
        ("python", "python"),
        ("cpp", "cpp"),
        ("java", "java"),
        ("js", "javascript"),
        ("go", "go"),
        ("rust", "rust"),
    ],
)
def test_humanevalx_ids_map_to_languages(humanevalx, key):
    assert HUMANEVALX[humanevalx].key == key
    assert get_language(humanevalx).key == key
    assert LANGUAGES[key].humanevalx == humanevalx


def test_only_the_six_humanevalx_languages_have_ids():
    assert sorted(HUMANEVALX) == ["cpp", "go", "java", "js", "python", "rust"]
    assert sum(language.humanevalx is not None for language in LANGUAGES.values()) == 6


def _stops(language: Language, completion: str) -> bool:
    return any(stop in completion for stop in language.stop_sequences)


def test_python_stops_after_the_body_but_not_inside_it():
    python = LANGUAGES["python"]
    nested = "    def helper(x):\n        if x:\n            # note\n            print(x)\n    return 1\n"
    assert not _stops(python, nested)
    for after in (
        "\ndef g():",
        "\nclass A:",
        '\nif __name__ == "__main__":',
        "\nprint(f(1))",
        "\n# test",
    ):
        assert _stops(python, nested + after), after


@pytest.mark.parametrize("key", ["cpp", "c", "java", "javascript", "go", "rust"])
def test_brace_languages_never_stop_inside_nested_blocks(key):
    language = LANGUAGES[key]
    assert language.brace_delimited
    # Unindented code puts inner closing braces at column 0, where "\n}" would misfire.
    nested = "if (x) {\nfor (;;) {\n}\n}\nreturn y;\n}\n"
    assert not _stops(language, nested)
    assert not _stops(language, "    " + nested.replace("\n", "\n    "))


@pytest.mark.parametrize(
    "key, after",
    [
        ("cpp", "\nint main() {"),
        ("c", "\nint main(int argc, char **argv) {"),
        ("java", "\n    public static void main(String[] args) {"),
        ("go", "\nfunc main() {"),
        ("rust", "\nfn main() {"),
    ],
)
def test_brace_languages_stop_at_a_following_entry_point(key, after):
    assert _stops(LANGUAGES[key], "    return 1;\n}\n" + after)


def test_a_name_of_many_dots_is_not_tried_suffix_by_suffix(monkeypatch):
    """A request's file name may be 100,000 dots; only suffixes as long as a known extension
    are looked up, so the work grows with the name, not with its square."""
    tried = []

    class Counting(dict):
        def get(self, key, default=None):
            tried.append(key)
            return super().get(key, default)

    monkeypatch.setattr(languages, "_BY_EXTENSION", Counting(languages._BY_EXTENSION))
    assert languages.detect_language("." * 100_000 + "x.py").key == "python"
    assert languages.detect_language("." * 100_000) is None
    assert len(tried) <= 2 * languages._LONGEST_EXTENSION
    assert languages.detect_language("types.d.applescript").key == "applescript"
