"""The one registry of programming languages: names, CodeGeeX tag lines, file detection.

CodeGeeX starts every training segment with a one-line tag written as a comment in the
segment's own language (``# language: Python``, ``// language: C++``), so that the model can
tell languages apart; prompts at inference start with the same line to pick the language.
Every stage reads this table: the data stage detects a file's language and prepends its tag,
the tokenizer adds the tags as tokens, generation prepends the tag and stops on the stop
sequences, and evaluation maps HumanEval-X's language ids.

Where the tags come from (public THUDM sources; the strings are kept verbatim, quirks
included, because a model trained on them only recognises them exactly):

- the 24-name ``LANGUAGE_TAG`` table released with CodeGeeX (``codegeex/data/data_utils.py``
  and ``codegeex/benchmark/utils.py`` in THUDM/CodeGeeX): CodeGeeX's training languages;
- the extended table of CodeGeeX2 (``evaluation/utils.py`` in THUDM/CodeGeeX2), for the rest.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

from geex.errors import GeexError

__all__ = [
    "CODEGEEX_LANGUAGES",
    "HUMANEVALX",
    "LANGUAGES",
    "Language",
    "detect_language",
    "get_language",
    "shebang_interpreter",
    "strip_tag",
    "tag_line",
]


@dataclass(frozen=True)
class Language:
    """One programming language and everything the pipeline needs to know about it.

    ``name`` is the name written in the tag (``tag`` contains it), with one exception: CodeGeeX2
    writes Swift's tag in lower case (``// language: swift``) while the name stays "Swift".

    ``stop_sequences`` hold only text that cannot occur inside a function body, so a generator
    may cut at the first one without looking at nesting. Brace languages have almost none:
    ``"\\n}"`` would run a Java method on to its class's closing brace and cut a body that is
    not indented at its first inner block. For those ``brace_delimited`` is set instead and the
    generator applies CodeGeeX's rule (HumanEval-X in THUDM/CodeGeeX): the body is over once the
    completion holds one more ``}`` than ``{``.
    """

    key: str  # canonical lowercase id: "python", "cpp", "csharp", "objective-c"
    name: str  # display name, as written in the tag: "Python", "C++", "C#"
    tag: str  # the CodeGeeX tag line, without its newline
    extensions: tuple[str, ...]  # lowercase, with the dot: (".py", ".pyw", ".pyi")
    filenames: tuple[str, ...] = ()  # exact file names: ("Makefile",)
    interpreters: tuple[str, ...] = ()  # lowercase program names of a #! line: ("python3",)
    line_comment: str | None = None
    block_comment: tuple[str, str] | None = None
    stop_sequences: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()  # other names users type, lowercase: ("py",)
    humanevalx: str | None = None  # HumanEval-X id (humaneval_<id>.jsonl.gz) for its six
    brace_delimited: bool = False  # function bodies are closed by a matching "}"

    def __post_init__(self) -> None:
        # Lookups lowercase their input; an entry that is not lowercase could never match.
        for ext in self.extensions:
            if not ext.startswith(".") or ext != ext.lower():
                raise ValueError(f"{self.key}: extension {ext!r} must be lowercase with a dot")
        for word in (self.key, *self.aliases, *self.interpreters):
            if word != word.lower():
                raise ValueError(f"{self.key}: {word!r} must be lowercase")
        if "\n" in self.tag or "language:" not in self.tag:
            raise ValueError(f"{self.key}: {self.tag!r} is not a one-line language tag")


# The languages CodeGeeX trained on, in the order of its released tag table, then the rest
# of the CodeGeeX table, then CodeGeeX2's additions. Hand-aligned; the formatter would
# spread each entry over a dozen lines.
# fmt: off
_TABLE: tuple[Language, ...] = (
    Language(
        "cpp", "C++", "// language: C++",
        (".cpp", ".cc", ".cxx", ".c++", ".hpp", ".hh", ".hxx", ".h++", ".inl", ".ipp", ".tcc"),
        line_comment="//", block_comment=("/*", "*/"), aliases=("c++", "cxx"),
        # CodeGeeX2 cuts HumanEval-X C++ completions at a following main().
        stop_sequences=("\nint main(",), humanevalx="cpp", brace_delimited=True,
    ),
    Language(
        # ".h" serves C, C++ and Objective-C alike; we call it C, the language all three can
        # include. Extensions match case-insensitively, so Unix's old ".C" for C++ lands here.
        "c", "C", "// language: C", (".c", ".h"),
        line_comment="//", block_comment=("/*", "*/"),
        stop_sequences=("\nint main(",), brace_delimited=True,
    ),
    Language(
        "csharp", "C#", "// language: C#", (".cs", ".csx"),
        line_comment="//", block_comment=("/*", "*/"), aliases=("c#", "cs", "c-sharp"),
        brace_delimited=True,
    ),
    Language(
        "cuda", "Cuda", "// language: Cuda", (".cu", ".cuh"),
        line_comment="//", block_comment=("/*", "*/"), aliases=("cu",), brace_delimited=True,
    ),
    Language(
        # ".m" is also MATLAB's; Objective-C is the one CodeGeeX trained on.
        "objective-c", "Objective-C", "// language: Objective-C", (".m",),
        line_comment="//", block_comment=("/*", "*/"), aliases=("objc", "objectivec", "obj-c"),
        brace_delimited=True,
    ),
    Language(
        "objective-cpp", "Objective-C++", "// language: Objective-C++", (".mm",),
        line_comment="//", block_comment=("/*", "*/"),
        aliases=("objective-c++", "objc++", "objcpp", "obj-c++"), brace_delimited=True,
    ),
    Language(
        "python", "Python", "# language: Python", (".py", ".pyw", ".pyi"),
        interpreters=("python", "python2", "python3", "pypy", "pypy3"),
        # Python has no block comment; docstrings are string literals, not comments.
        line_comment="#", aliases=("py", "python3"), humanevalx="python",
        # A body is indented, so any statement at column 0 ends it. These are the column-0
        # starts CodeGeeX's HumanEval-X cleanup cuts at ("\ndef", "\nclass", "\nif", "\n#",
        # "\nprint", "\nassert"), plus decorators and async functions.
        stop_sequences=(
            "\ndef ", "\nasync def ", "\nclass ", "\n@", "\nif ", "\nprint(", "\nassert ", "\n#",
        ),
    ),
    Language(
        "java", "Java", "// language: Java", (".java",), interpreters=("java",),
        line_comment="//", block_comment=("/*", "*/"), humanevalx="java",
        # HumanEval-X Java methods sit inside "class Solution {"; no newline-anchored brace is
        # safe, but a main method can only start after the method being written has ended.
        stop_sequences=("public static void main(",), brace_delimited=True,
    ),
    Language(
        "scala", "Scala", "// language: Scala", (".scala", ".sc"), interpreters=("scala",),
        line_comment="//", block_comment=("/*", "*/"), brace_delimited=True,
    ),
    Language(
        "tex", "TeX", "% language: TeX", (".tex", ".sty", ".cls", ".ltx"),
        line_comment="%", aliases=("latex",),
    ),
    Language(
        # No spaces inside the comment markers: that is how the CodeGeeX table writes it.
        "html", "HTML", "<!--language: HTML-->", (".html", ".htm", ".xhtml"),
        block_comment=("<!--", "-->"),
    ),
    Language(
        "php", "PHP", "// language: PHP", (".php", ".phtml", ".php3", ".php4", ".php5"),
        interpreters=("php",), line_comment="//", block_comment=("/*", "*/"),
        brace_delimited=True,
    ),
    Language(
        "javascript", "JavaScript", "// language: JavaScript", (".js", ".mjs", ".cjs", ".jsx"),
        interpreters=("node", "nodejs"), line_comment="//", block_comment=("/*", "*/"),
        # CodeGeeX ends HumanEval-X JavaScript on the brace count alone.
        aliases=("js", "node", "nodejs"), humanevalx="js", brace_delimited=True,
    ),
    Language(
        # Declaration files ("index.d.ts") resolve through ".ts".
        "typescript", "TypeScript", "// language: TypeScript", (".ts", ".mts", ".cts", ".tsx"),
        interpreters=("ts-node",), line_comment="//", block_comment=("/*", "*/"),
        aliases=("ts",), brace_delimited=True,
    ),
    Language(
        "go", "Go", "// language: Go", (".go",),
        line_comment="//", block_comment=("/*", "*/"), aliases=("golang",), humanevalx="go",
        # Go has no nested named functions, so "func main(" at column 0 is always top level.
        stop_sequences=("\nfunc main(",), brace_delimited=True,
    ),
    Language(
        "shell", "Shell", "# language: Shell", (".sh", ".bash", ".zsh", ".ksh"),
        filenames=(".bashrc", ".bash_profile", ".profile", ".zshrc", ".zprofile"),
        interpreters=("sh", "bash", "zsh", "ksh", "dash", "ash", "mksh"),
        line_comment="#", aliases=("sh", "bash", "zsh", "shellscript"),
    ),
    Language(
        "rust", "Rust", "// language: Rust", (".rs",),
        line_comment="//", block_comment=("/*", "*/"), aliases=("rs",), humanevalx="rust",
        stop_sequences=("\nfn main(",), brace_delimited=True,
    ),
    Language("css", "CSS", "/* language: CSS */", (".css",), block_comment=("/*", "*/")),
    Language("sql", "SQL", "-- language: SQL", (".sql",), line_comment="--", block_comment=("/*", "*/")),
    Language(
        "kotlin", "Kotlin", "// language: Kotlin", (".kt", ".kts"),
        line_comment="//", block_comment=("/*", "*/"), aliases=("kt",), brace_delimited=True,
    ),
    Language(
        # Not ".pp": on GitHub that is mostly Puppet.
        "pascal", "Pascal", "// language: Pascal", (".pas", ".lpr"),
        line_comment="//", block_comment=("{", "}"),
    ),
    Language(
        "r", "R", "# language: R", (".r",), filenames=(".Rprofile",), interpreters=("rscript",),
        line_comment="#", brace_delimited=True,
    ),
    Language(
        # No space after the "!", as the CodeGeeX table writes it.
        "fortran", "Fortran", "!language: Fortran",
        (".f", ".for", ".ftn", ".f77", ".f90", ".f95", ".f03", ".f08"),
        line_comment="!",
    ),
    Language("lean", "Lean", "-- language: Lean", (".lean",), line_comment="--", block_comment=("/-", "-/")),
    # The rest of CodeGeeX's table (Perl joined it after the release) and CodeGeeX2's additions.
    Language(
        # ".pl" is also Prolog's; Perl is far more common.
        "perl", "Perl", "# language: Perl", (".pl", ".pm"), interpreters=("perl",),
        line_comment="#", block_comment=("=pod", "=cut"), brace_delimited=True,
    ),
    Language(
        "ruby", "Ruby", "# language: Ruby", (".rb", ".rake", ".gemspec"),
        filenames=("Rakefile", "Gemfile"), interpreters=("ruby",),
        line_comment="#", block_comment=("=begin", "=end"), aliases=("rb",),
    ),
    Language(
        # CodeGeeX2 tags Lua with "//" although Lua comments start with "--".
        "lua", "Lua", "// language: Lua", (".lua",), interpreters=("lua", "luajit"),
        line_comment="--", block_comment=("--[[", "]]"),
    ),
    Language(
        # CodeGeeX2 writes this one tag in lower case.
        "swift", "Swift", "// language: swift", (".swift",), interpreters=("swift",),
        line_comment="//", block_comment=("/*", "*/"), brace_delimited=True,
    ),
    Language(
        "dart", "Dart", "// language: Dart", (".dart",), interpreters=("dart",),
        line_comment="//", block_comment=("/*", "*/"), brace_delimited=True,
    ),
    Language(
        "haskell", "Haskell", "-- language: Haskell", (".hs",),
        interpreters=("runhaskell", "runghc"), line_comment="--", block_comment=("{-", "-}"),
        aliases=("hs",),
    ),
    Language(
        "julia", "Julia", "# language: Julia", (".jl",), interpreters=("julia",),
        line_comment="#", block_comment=("#=", "=#"), aliases=("jl",),
    ),
    Language(
        # ".m" belongs to Objective-C (above), so MATLAB is reachable by name only.
        "matlab", "Matlab", "% language: Matlab", (),
        line_comment="%", block_comment=("%{", "%}"), aliases=("octave",),
    ),
    Language(
        "vue", "Vue", "<!--language: Vue-->", (".vue",), block_comment=("<!--", "-->"),
    ),
    Language(
        "markdown", "Markdown", "<!--language: Markdown-->", (".md", ".markdown"),
        block_comment=("<!--", "-->"), aliases=("md",),
    ),
    Language(
        "rmarkdown", "RMarkdown", "# language: RMarkdown", (".rmd",),
        block_comment=("<!--", "-->"), aliases=("rmd",),
    ),
    Language(
        "visual-basic", "Visual Basic", "' language: Visual Basic", (".vb", ".vbs"),
        line_comment="'", aliases=("vb", "vbnet", "vb.net"),
    ),
    Language("basic", "Basic", "' language: Basic", (".bas",), line_comment="'"),
    Language(
        "delphi", "Delphi", "{language: Delphi}", (".dpr", ".dpk"),
        line_comment="//", block_comment=("{", "}"),
    ),
    Language(
        "assembly", "Assembly", "; language: Assembly", (".asm", ".s"),
        line_comment=";", aliases=("asm",),
    ),
    Language(
        "groovy", "Groovy", "// language: Groovy", (".groovy", ".gvy", ".gradle"),
        filenames=("Jenkinsfile",), interpreters=("groovy",),
        line_comment="//", block_comment=("/*", "*/"), brace_delimited=True,
    ),
    Language("abap", "Abap", "* language: Abap", (".abap",), line_comment='"'),
    Language("gdscript", "GDScript", "# language: GDScript", (".gd",), line_comment="#"),
    Language(
        "elixir", "Elixir", "# language: Elixir", (".ex", ".exs"), interpreters=("elixir",),
        line_comment="#",
    ),
    Language(
        "clojure", "Clojure", "; language: Clojure", (".clj", ".cljs", ".cljc"),
        interpreters=("clojure",), line_comment=";", aliases=("clj",),
    ),
    Language(
        "actionscript", "ActionScript", "// language: ActionScript", (".as",),
        line_comment="//", block_comment=("/*", "*/"), brace_delimited=True,
    ),
    Language(
        "solidity", "Solidity", "// language: Solidity", (".sol",),
        line_comment="//", block_comment=("/*", "*/"), brace_delimited=True,
    ),
    Language(
        "powershell", "PowerShell", "# language: PowerShell", (".ps1", ".psm1", ".psd1"),
        interpreters=("pwsh", "powershell"), line_comment="#", block_comment=("<#", "#>"),
        aliases=("pwsh", "ps1"), brace_delimited=True,
    ),
    Language(
        "erlang", "Erlang", "% language: Erlang", (".erl", ".hrl"), interpreters=("escript",),
        line_comment="%", aliases=("erl",),
    ),
    Language(
        # CodeGeeX2 tags COBOL with "//", which is not COBOL syntax.
        "cobol", "Cobol", "// language: Cobol", (".cob", ".cbl"), line_comment="*>",
    ),
    Language(
        "alloy", "Alloy", "/* language: Alloy */", (".als",),
        line_comment="//", block_comment=("/*", "*/"),
    ),
    Language(
        # "//" in the tag although awk comments start with "#".
        "awk", "AWK", "// language: AWK", (".awk",), interpreters=("awk", "gawk", "mawk", "nawk"),
        line_comment="#",
    ),
    Language(
        "thrift", "Thrift", "/* language: Thrift */", (".thrift",),
        line_comment="//", block_comment=("/*", "*/"),
    ),
    Language("sparql", "SPARQL", "# language: SPARQL", (".sparql", ".rq"), line_comment="#"),
    Language("augeas", "Augeas", "// language: Augeas", (".aug",), block_comment=("(*", "*)")),
    Language(
        "cmake", "CMake", "# language: CMake", (".cmake",), filenames=("CMakeLists.txt",),
        line_comment="#", block_comment=("#[[", "]]"),
    ),
    Language(
        "fsharp", "F#", "// language: F#", (".fs", ".fsi", ".fsx"),
        line_comment="//", block_comment=("(*", "*)"), aliases=("f#", "f-sharp"),
    ),
    Language(
        "stan", "Stan", "// language: Stan", (".stan",),
        line_comment="//", block_comment=("/*", "*/"), brace_delimited=True,
    ),
    Language("isabelle", "Isabelle", "(*language: Isabelle*)", (".thy",), block_comment=("(*", "*)")),
    Language(
        "dockerfile", "Dockerfile", "# language: Dockerfile", (".dockerfile",),
        filenames=("Dockerfile", "Containerfile"), line_comment="#", aliases=("docker",),
    ),
    Language(
        "literate-agda", "Literate Agda", "-- language: Literate Agda", (".lagda",),
        line_comment="--", block_comment=("{-", "-}"),
    ),
    Language(
        "glsl", "GLSL", "// language: GLSL", (".glsl", ".vert", ".frag"),
        line_comment="//", block_comment=("/*", "*/"), brace_delimited=True,
    ),
    Language(
        "antlr", "ANTLR", "// language: ANTLR", (".g4",),
        line_comment="//", block_comment=("/*", "*/"),
    ),
    Language(
        "verilog", "Verilog", "// language: Verilog", (".v", ".vh"),
        line_comment="//", block_comment=("/*", "*/"),
    ),
    Language(
        "racket", "Racket", "; language: Racket", (".rkt",), interpreters=("racket",),
        line_comment=";", block_comment=("#|", "|#"),
    ),
    Language(
        # No space after the colon, as the CodeGeeX2 table writes it.
        "standard-ml", "Standard ML", "(*language:Standard ML*)", (".sml",),
        block_comment=("(*", "*)"), aliases=("sml",),
    ),
    Language(
        "elm", "Elm", "-- language: Elm", (".elm",), line_comment="--", block_comment=("{-", "-}"),
    ),
    Language("yaml", "YAML", "# language: YAML", (".yaml", ".yml"), line_comment="#", aliases=("yml",)),
    Language(
        # Smalltalk comments are double-quoted; the doubled single quote is CodeGeeX2's.
        "smalltalk", "Smalltalk", "'' language: Smalltalk", (".st",), block_comment=('"', '"'),
    ),
    Language(
        "ocaml", "OCaml", "(*language: OCaml*)", (".ml", ".mli"), interpreters=("ocaml",),
        block_comment=("(*", "*)"),
    ),
    Language(
        "idris", "Idris", "-- language: Idris", (".idr",),
        line_comment="--", block_comment=("{-", "-}"),
    ),
    Language(
        "protobuf", "Protocol Buffer", "// language: Protocol Buffer", (".proto",),
        line_comment="//", block_comment=("/*", "*/"), aliases=("protocol-buffer", "proto"),
    ),
    Language(
        "bluespec", "Bluespec", "// language: Bluespec", (".bsv",),
        line_comment="//", block_comment=("/*", "*/"),
    ),
    Language(
        "applescript", "AppleScript", "-- language: AppleScript", (".applescript",),
        interpreters=("osascript",), line_comment="--", block_comment=("(*", "*)"),
    ),
    Language(
        "makefile", "Makefile", "# language: Makefile", (".mk", ".mak"),
        filenames=("Makefile", "makefile", "GNUmakefile"), interpreters=("make",),
        line_comment="#", aliases=("make",),
    ),
    Language(
        "tcsh", "TCSH", "# language: TCSH", (".tcsh", ".csh"), interpreters=("tcsh", "csh"),
        line_comment="#", aliases=("csh",),
    ),
    Language("maple", "Maple", "# language: Maple", (".mpl",), line_comment="#", block_comment=("(*", "*)")),
    Language(
        "systemverilog", "SystemVerilog", "// language: SystemVerilog", (".sv", ".svh"),
        line_comment="//", block_comment=("/*", "*/"),
    ),
    Language(
        "literate-coffeescript", "Literate CoffeeScript", "# language: Literate CoffeeScript",
        (".litcoffee",),
    ),
    Language("vhdl", "VHDL", "-- language: VHDL", (".vhd", ".vhdl"), line_comment="--"),
    Language(
        "restructuredtext", "reStructuredText", ".. language: reStructuredText", (".rst",),
        line_comment="..", aliases=("rst",),
    ),
    Language("sas", "SAS", "* language: SAS", (".sas",), block_comment=("/*", "*/")),
    Language(
        # Bird-style literate Haskell marks code lines with ">".
        "literate-haskell", "Literate Haskell", "> language: Literate Haskell", (".lhs",),
        aliases=("lhs",),
    ),
    Language(
        "jsp", "Java Server Pages", "// language: Java Server Pages", (".jsp",),
        block_comment=("<%--", "--%>"), aliases=("java-server-pages",),
    ),
    Language(
        "coffeescript", "CoffeeScript", "# language: CoffeeScript", (".coffee",),
        interpreters=("coffee",), line_comment="#", block_comment=("###", "###"),
        aliases=("coffee",),
    ),
    Language(
        "emacs-lisp", "Emacs Lisp", "; language: Emacs Lisp", (".el",), interpreters=("emacs",),
        line_comment=";", aliases=("elisp",),
    ),
    Language(
        "mathematica", "Mathematica", "// language: Mathematica", (".wl", ".wls"),
        block_comment=("(*", "*)"), aliases=("wolfram",),
    ),
    Language("xslt", "XSLT", "<!--language: XSLT-->", (".xsl", ".xslt"), block_comment=("<!--", "-->")),
    Language("zig", "Zig", "// language: Zig", (".zig",), line_comment="//", brace_delimited=True),
    Language(
        "lisp", "Lisp", "; language: Lisp", (".lisp", ".lsp"), interpreters=("sbcl", "clisp"),
        line_comment=";", block_comment=("#|", "|#"),
    ),
    Language(
        # Its files are detected as the shorter "Lisp" tag above (the one CodeGeeX2's demo
        # offers); this entry keeps the tag recognisable by name and by strip_tag.
        "common-lisp", "Common Lisp", "; language: Common Lisp", (),
        line_comment=";", block_comment=("#|", "|#"),
    ),
    Language(
        "scheme", "Scheme", "; language: Scheme", (".scm", ".ss"), interpreters=("guile",),
        line_comment=";", block_comment=("#|", "|#"),
    ),
    Language(
        # ".pl" belongs to Perl and ".pro" is mostly Qt project files.
        "prolog", "Prolog", "% language: Prolog", (".prolog",), interpreters=("swipl",),
        line_comment="%", block_comment=("/*", "*/"),
    ),
    Language(
        "stata", "Stata", "* language: Stata", (".do", ".ado"),
        line_comment="//", block_comment=("/*", "*/"),
    ),
    Language("agda", "Agda", "-- language: Agda", (".agda",), line_comment="--", block_comment=("{-", "-}")),
    Language("ada", "Ada", "-- language: Ada", (".adb", ".ads", ".ada"), line_comment="--"),
    # Left out of CodeGeeX2's table: "tcl" (its tag there reads "// language: Augeas", a copy
    # slip) and "excel" (spreadsheets are not source files).
)
# fmt: on

# CodeGeeX's paper and README say it trained on 23 languages; its released tag table names
# 24, Objective-C++ among them, and the released code does not say which one the count
# leaves out. We count Objective-C++ with Objective-C (a dialect; it keeps its own tag above)
# and list the other 23 in the table's order.
CODEGEEX_LANGUAGES: tuple[str, ...] = (
    "cpp", "c", "csharp", "cuda", "objective-c", "python", "java", "scala", "tex", "html",
    "php", "javascript", "typescript", "go", "shell", "rust", "css", "sql", "kotlin", "pascal",
    "r", "fortran", "lean",
)  # fmt: skip


def _index_by(languages: Iterable[Language], words_of, normalize=str) -> dict[str, Language]:
    """Map each word of each language to it; a word claimed by two languages is a table bug."""
    index: dict[str, Language] = {}
    for language in languages:
        for word in words_of(language):
            word = normalize(word)
            owner = index.setdefault(word, language)
            if owner.key != language.key:
                raise ValueError(f"{word!r} is claimed by both {owner.key!r} and {language.key!r}")
    return index


LANGUAGES: dict[str, Language] = _index_by(_TABLE, lambda lang: (lang.key,))
_BY_NAME = _index_by(_TABLE, lambda lang: (lang.key, lang.name, *lang.aliases), str.lower)
_BY_EXTENSION = _index_by(_TABLE, lambda lang: lang.extensions)
_LONGEST_EXTENSION = max(map(len, _BY_EXTENSION))
_BY_FILENAME = _index_by(_TABLE, lambda lang: lang.filenames)
_BY_INTERPRETER = _index_by(_TABLE, lambda lang: lang.interpreters)
_BY_TAG = _index_by(_TABLE, lambda lang: (lang.tag,))

# HumanEval-X language id ("python", "cpp", "java", "js", "go", "rust") -> Language.
HUMANEVALX: dict[str, Language] = _index_by(
    _TABLE, lambda lang: (lang.humanevalx,) if lang.humanevalx else ()
)


def get_language(name: str | Language) -> Language:
    """Look a language up by key, display name or alias, in any case ("C++", "cpp", "c++")."""
    if isinstance(name, Language):
        return name
    language = _BY_NAME.get(name.strip().lower())
    if language is None:
        raise GeexError(f"unknown language {name!r}; valid keys: {', '.join(LANGUAGES)}")
    return language


def tag_line(language: str | Language) -> str:
    """The CodeGeeX tag line (no newline) for a language given by name or as a Language."""
    return get_language(language).tag


def strip_tag(text: str) -> tuple[Language | None, str]:
    """Split a leading tag line off ``text``: ``(language, rest)``, or ``(None, text)``.

    The tag must fill the whole first line (trailing spaces and a CR allowed), so that
    "// language: C" does not match the start of "// language: C++".
    """
    first_line, _, rest = text.partition("\n")
    language = _BY_TAG.get(first_line.rstrip(" \t\r"))
    if language is None:
        return None, text
    return language, rest


# Options of env(1) that consume the next word; any other "-x" word is a flag on its own.
_ENV_OPTIONS_WITH_VALUE = frozenset({"-u", "--unset", "-C", "--chdir"})
_VERSION_SUFFIX = re.compile(r"[\d.]+$")


def _basename(path: str) -> str:
    return re.split(r"[\\/]", path)[-1]


def shebang_interpreter(first_line: str) -> str | None:
    """The program a ``#!`` line runs, lowercased: "python3.11" for ``#!/usr/bin/env python3.11``.

    Looks through ``env``, its flags and ``NAME=value`` settings, including the ``-S`` form
    (``#!/usr/bin/env -S node --flag``). None when the line is not a shebang.
    """
    line = first_line.lstrip("\ufeff")
    if not line.startswith("#!"):
        return None
    words = iter(line[2:].split())
    program = next(words, None)
    if program is None:
        return None
    program = _basename(program)
    if program == "env":
        program = None
        for word in words:
            if word in _ENV_OPTIONS_WITH_VALUE:
                next(words, None)
            elif word.startswith("-S") and len(word) > 2:  # "-Snode --flag" glued together
                program = word[2:]
                break
            elif not word.startswith("-") and "=" not in word:
                program = word
                break
        if program is None:
            return None
        program = _basename(program)
    program = program.lower()
    return program.removesuffix(".exe")


def detect_language(path: str | os.PathLike[str], first_line: str | None = None) -> Language | None:
    """Guess a file's language from its name, then its extension, then its ``#!`` line.

    Extensions are compared case-insensitively and longest first: "index.d.ts" tries ".d.ts"
    then ".ts", so a compound extension can claim its own language while "jquery.min.js"
    still falls through to ".js". A leading dot marks a hidden file (".bashrc"), not an
    extension. Returns None when nothing matches.
    """
    name = _basename(os.fspath(path))
    language = _BY_FILENAME.get(name)
    if language is not None:
        return language

    lowered = name.lower()
    # No extension is longer than the longest known one: a name of many dots ("." * 100_000 in
    # a request) is not tried suffix by suffix, which would take the square of its length.
    dot = lowered.find(".", max(1, len(lowered) - _LONGEST_EXTENSION))
    while dot != -1:
        language = _BY_EXTENSION.get(lowered[dot:])
        if language is not None:
            return language
        dot = lowered.find(".", dot + 1)

    if first_line is None:
        return None
    program = shebang_interpreter(first_line)
    if program is None:
        return None
    # "python3.11" and "perl5.30" are listed without their version.
    return _BY_INTERPRETER.get(program) or _BY_INTERPRETER.get(_VERSION_SUFFIX.sub("", program))
