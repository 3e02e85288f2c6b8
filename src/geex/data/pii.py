"""Secrets and personal data redaction: e-mail and IP addresses, keys and tokens.

StarCoder (Li et al., 2023, section 4) redacted personal data before training, with the
regexes and secret detectors of bigcode-project/bigcode-dataset ``pii/``: e-mail and IP
addresses by regex (dropping private IPs, popular DNS servers and version-like false
positives), keys by detect-secrets plugins with a gibberish model on top. Geex does the same
job with regexes and a few checks (no model, no extra dependency), and replaces each find by
a placeholder:

- ``<EMAIL>``: an e-mail address, whole;
- ``<IP_ADDRESS>``: a public IPv4 address, or an IPv6 one in global unicast space
  (2000::/3);
- ``<KEY>``: an AWS access key id (AKIA, ASIA), a Google API key, a Stripe live key, the
  body of a PEM private key block (its BEGIN/END lines stay), a value given to a name that
  ends in secret, password, passwd, pwd, token, credential(s) or api/access/private/secret
  key (``api_key = "..."``, ``"password": "..."``, ``AWS_SECRET_ACCESS_KEY=...`` ending a
  line), or a quoted string of 24 or more random-looking characters (mixed case and digits,
  Shannon entropy of at least 4.5 bits per character, detect-secrets' bar for base64,
  or 90% of the most its length allows when shorter);
- ``<TOKEN>``: a bearer token of a known shape: GitHub (``ghp_``, ``gho_``, ``ghu_``,
  ``ghs_``, ``ghr_``, ``github_pat_``), GitLab (``glpat-``), Slack (``xox?-``), npm
  (``npm_``), JSON Web Tokens.

Kept on purpose, as not personal or not secret (each case is in the tests):

- e-mail: reserved domains (``example.com/.org/.net`` and their subdomains, ``.example``,
  ``.test``, ``.invalid``, ``.localhost``, ``.local``), dotless hosts (``user@localhost``),
  ``git@`` remotes (``git@github.com:org/repo``), and anything whose last label is not a
  known top-level domain: image names (``icon@2x.png``), matrix products
  (``x@self.weight``), package pins (``pkg@1.0.2``);
- IP: whatever ``ipaddress`` does not call global (private, loopback, link-local,
  reserved, documentation ranges) and multicast; public DNS resolvers (``8.8.8.8``,
  ``1.1.1.1``, ... as StarCoder); dotted numbers glued to a word, a dash or more dots
  (``v1.2.3.4``, ``linux-2.6.16.60``, OIDs like ``1.3.6.1.4.1``); bracketed or
  comment-leading section numbers (``[23.2.4.3]``, ``// 20.11.5.1 construction``); quads on
  a line that says version, release, section, RFC, spec, ISO, IEEE, C++NN or OID; and
  one-digit quads (``1.2.3.4``) unless the line speaks of an IP, host, server or DNS;
- keys: AWS's documented ``...EXAMPLE`` keys; placeholders and templates (``changeme``,
  ``xxxx``, ``<your-key>``, ``${TOKEN}``, ``{{ secret }}``, ``%(password)s``); values that
  name rather than hold a secret (they contain key, token, secret, password, or are a
  dotted name like ``settings.API_KEY``); values without both a letter and a digit; UUIDs;
  and, for unnamed quoted strings only, hex strings (hashes and checksums), base64 of
  printable text, runs of an alphabet (``ABCDEF...``), strings on a line that says hash,
  sha, md5, digest, checksum, integrity, fingerprint or crc, and every such string of a
  file that holds more than 8 (certificates and test vectors are data, not leaks).

Each redaction is counted as ``redacted_<kind>`` (``email``, ``ip_address``, ``key``,
``token``) in the block's statistics, with ``documents_redacted``; every document gets
``metadata["redactions"] = {"email": n, "ip_address": n, "key": n, "token": n}``, zeros
included, so that columnar writers see one schema. Running the block twice changes nothing
the second time.

Speed: every scan opens with a literal ("@", ".", ":", a quote, "AKIA"...), which the regex
engine finds at memory speed, or is a ``str.find`` for a name; the few hits are then grown
and checked in Python.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

__all__ = ["KINDS", "PLACEHOLDERS", "RedactSecrets", "Redaction", "find_secrets", "redact"]

KINDS = ("email", "ip_address", "key", "token")
PLACEHOLDERS = {kind: f"<{kind.upper()}>" for kind in KINDS}


@dataclass(frozen=True, order=True)
class Redaction:
    """``text[start:end]`` is a secret of ``kind``."""

    start: int
    end: int
    kind: str


# --- e-mail addresses -------------------------------------------------------------------------

# Matched around each "@" rather than by one pattern: a pattern that starts with the local
# part would be tried, and backtrack, at every letter of the text.
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}\Z")
_EMAIL_DOMAIN = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-]|\.[A-Za-z0-9])"
)
_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.%+-")
# The generic top-level domains seen in code, and every two-letter country code: an address
# must end in one, which rules out "x@self.weight" and "logo@2x.png".
_COMMON_TLDS = frozenset(
    (
        "com", "org", "net", "edu", "gov", "mil", "int", "info", "biz", "name", "pro", "io",
        "ai", "app", "dev", "tech", "cloud", "site", "online", "xyz", "email", "mail",
        "museum", "mobi", "aero", "coop", "jobs", "travel", "asia", "tel",
    )
)  # fmt: skip
# Two-letter file extensions that are not worth reading as country codes ("@2x.js").
_FILE_EXTENSIONS = frozenset(("js", "ts", "py", "rb", "go", "rs", "md", "cs", "sh", "pm", "hh"))
_RESERVED_DOMAINS = ("example.com", "example.org", "example.net")
_RESERVED_SUFFIXES = (".example", ".test", ".invalid", ".localhost", ".local")
_SELF_NAMES = frozenset({"self", "this", "cls"})


def _is_personal_email(local: str, domain: str) -> bool:
    domain = domain.lower()
    tld = domain.rsplit(".", 1)[1]
    if tld not in _COMMON_TLDS and not (len(tld) == 2 and tld not in _FILE_EXTENSIONS):
        return False
    if domain in _RESERVED_DOMAINS or domain.endswith(_RESERVED_SUFFIXES):
        return False
    if any(domain.endswith("." + reserved) for reserved in _RESERVED_DOMAINS):
        return False
    if domain.split(".", 1)[0] in _SELF_NAMES:
        return False
    return local.lower() != "git"


def _find_emails(text: str) -> Iterator[Redaction]:
    at = text.find("@")
    while at != -1:
        domain = _EMAIL_DOMAIN.match(text, at + 1)
        local = domain and _EMAIL_LOCAL.search(text, max(0, at - 64), at)
        if (
            local
            and (local.start() == 0 or text[local.start() - 1] not in _LOCAL_CHARS)
            and _is_personal_email(local[0], domain[0])
        ):
            yield Redaction(local.start(), domain.end(), "email")
        at = text.find("@", at + 1)


# --- IP addresses -----------------------------------------------------------------------------

# Both patterns open with a literal, which the regex engine finds at memory speed; the rest
# of the address is grown around the hit and checked in Python (hits are rare).
_IPV4_TAIL = re.compile(r"\.\d{1,3}\.\d{1,3}\.\d{1,3}")
_IPV4_HEAD = re.compile(r"\d{1,3}\Z")
# Three colons around one to four hex digits: every IPv6 address with three groups or more
# has it, C++ and Rust paths ("std::vec", "a::b::c") do not.
_IPV6_CORE = re.compile(r":[0-9A-Fa-f]{1,4}:")
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:")
_IPV4_CHARS = frozenset("0123456789.")
_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
# Public resolvers are configuration, not anyone's address (StarCoder kept the same list).
_PUBLIC_DNS = frozenset(
    (
        "8.8.8.8", "8.8.4.4", "1.1.1.1", "1.0.0.1", "9.9.9.9", "149.112.112.112",
        "208.67.222.222", "208.67.220.220", "76.76.19.19", "76.223.122.150", "8.26.56.26",
        "8.20.247.20", "94.140.14.14", "94.140.15.15", "2001:4860:4860::8888",
        "2001:4860:4860::8844", "2606:4700:4700::1111", "2606:4700:4700::1001",
    )
)  # fmt: skip
_HOST_WORDS = re.compile(r"\b(?:ip|ips|host|hosts|server|dns|addr|address|ping)\b", re.I)
# Dotted quads that are not addresses: versions, sections of standards ("[23.2.4.3]",
# "section 9.4.2.251", "C++14 20.8.2.2", "CDC spec 5.2.3.11"), object ids ("2.5.4.46").
_NOT_AN_ADDRESS = re.compile(
    r"version|release|section|§|\b(?:rfc|spec|ieee|iso|ecma|clause|chapter|table|figure|appendix)\b"
    r"|c\+\+\d\d|(?<![a-z])oids?(?![a-z])"
)
_COMMENT_OPENERS = ("//", "/*", "#", "*", "--", ";", "%", "!")


def _line_of(text: str, start: int, end: int) -> str:
    line_end = text.find("\n", end)
    return text[text.rfind("\n", 0, start) + 1 : line_end if line_end != -1 else len(text)]


def _is_public_ip(value: str) -> bool:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:  # also leading zeros ("01.2.3.4"), which ipaddress refuses
        return False
    return address.is_global and not address.is_multicast and value not in _PUBLIC_DNS


def _find_ipv4(text: str) -> Iterator[Redaction]:
    for tail in _IPV4_TAIL.finditer(text):
        head = _IPV4_HEAD.search(text, max(0, tail.start() - 3), tail.start())
        if head is None:
            continue
        start, end = head.start(), tail.end()
        before = text[start - 1] if start > 0 else " "
        after = text[end : end + 2]
        # Not glued to a word or to more dotted numbers: "v1.2.3.4", "linux-2.6.16.60",
        # "1.3.6.1.4.1" and "4.3.2.1.in-addr.arpa" are not addresses.
        if before in _WORD_CHARS or before in ".-" or after[:1] in _WORD_CHARS:
            continue
        if after[:1] == "." and after[1:].isalnum():
            continue
        if before == "[" and after[:1] == "]":
            continue  # a section reference: "[23.2.4.3]"
        value = text[start:end]
        if not _is_public_ip(value):
            continue
        line_start = text.rfind("\n", 0, start) + 1
        if text[line_start:start].rstrip().endswith(_COMMENT_OPENERS):
            continue  # a numbered heading: "// 20.11.5.1 construction"
        line = _line_of(text, start, end).lower()
        if _NOT_AN_ADDRESS.search(line):
            continue
        if len(value) == 7 and not _HOST_WORDS.search(line):  # "1.2.3.4": a version number
            continue
        yield Redaction(start, end, "ip_address")


def _find_ipv6(text: str) -> Iterator[Redaction]:
    last_end = -1
    for core in _IPV6_CORE.finditer(text):
        if core.start() < last_end:
            continue  # inside the address found just before
        start, end = core.start(), core.end()
        while start > 0 and end - start < 45 and text[start - 1] in _IPV6_CHARS:
            start -= 1
        while end < len(text) and end - start < 45 and text[end] in _IPV6_CHARS:
            end += 1
        if text[end : end + 1] == "." and text[end + 1 : end + 2].isdigit():
            while end < len(text) and end - start < 45 and text[end] in _IPV4_CHARS:
                end += 1  # an IPv4 tail: "::ffff:192.0.2.1"
        last_end = end
        if start > 0 and (text[start - 1] in _WORD_CHARS or text[start - 1] == "."):
            continue
        if end < len(text) and text[end] in _WORD_CHARS:
            continue
        value = text[start:end]
        # Global unicast space is 2000::/3; the rest of what ipaddress calls global is
        # unallocated, and there MAC addresses and hex words ("abcd:2345::") would land.
        if value[:1] in "23" and _is_public_ip(value):
            first = int(value.split(":", 1)[0] or "0", 16)
            if 0x2000 <= first <= 0x3FFF:
                yield Redaction(start, end, "ip_address")


# --- keys and tokens ---------------------------------------------------------------------------

# Each pattern opens with a literal, which the regex engine finds at memory speed; formats
# sharing a first letter share a scan (one pattern of all alternatives would be tried at
# every letter). Only access keys and tokens are listed: AWS ids such as AIDA (user) or
# AROA (role) name things, they do not grant access.
_KNOWN_FORMATS = (
    # AWS access key ids (long-term AKIA, temporary ASIA), Google API keys.
    ("key", re.compile(r"A(?:[KS]IA[0-9A-Z]{16}|Iza[0-9A-Za-z_-]{35})")),
    ("key", re.compile(r"k_live_[0-9A-Za-z]{24,99}")),  # Stripe sk_live_/rk_live_
    # GitHub (classic and fine-grained) and GitLab personal access tokens.
    (
        "token",
        re.compile(
            r"g(?:h[pousr]_[A-Za-z0-9]{36,251}|ithub_pat_[A-Za-z0-9_]{82}|lpat-[A-Za-z0-9_-]{20})"
        ),
    ),
    ("token", re.compile(r"xox[abposr]-[A-Za-z0-9-]{10,250}")),  # Slack
    ("token", re.compile(r"npm_[A-Za-z0-9]{36}")),
    ("token", re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),  # JWT
)
_TOKEN_CHARS = _WORD_CHARS | {"-"}
_PRIVATE_KEY = re.compile(
    r"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY((?: BLOCK)?)-----\r?\n"
    r"(.+?)\r?\n-----END \1PRIVATE KEY\2-----",
    re.S,
)

# A name that ends in a secret word (found with str.find on the lowercased text), then a
# quoted value, or a bare value ending the line: AWS_SECRET_ACCESS_KEY, client_secret,
# db_password, "apiKey", authToken, SECRET_KEY, api_key: str = "...".
# Each word, and how it may end: "passw" stands for password and passwd.
_SECRET_WORDS = {
    word: re.compile(ending)
    for word, ending in (
        ("secret", ""), ("passw", "ord|d"), ("pwd", ""), ("token", ""), ("credential", "s?"),
    )
}  # fmt: skip
_KEY_QUALIFIER = re.compile(r"(?:api|access|private|secret|secret[_-]?access)[_-]?\Z")
_ASSIGNED_VALUE = re.compile(
    r"[\"']?(?:\s*:\s*[\w.\[\]]+)?\s*(?::=|=>|=|:)\s*"
    r"(?:[bruBRU]{0,2}([\"'])([^\"'\s\\]{8,200})\1"  # a quoted value
    r"|([A-Za-z0-9+/=_.!@#%^&*~-]{16,200})[ \t]*(?=\r?$))",  # a bare value ending the line
    re.M,
)
# One scan per quote character: a literal first character is found fast, a class is not.
_QUOTED_BLOBS = {q: re.compile(f"{q}([A-Za-z0-9+/_=-]{{24,256}}){q}") for q in "\"'`"}
# Values that are placeholders or names (a value that itself says "key" or "token" is a
# name: testRSA2048PrivateKey, "access_token_v2"), and templates: ${TOKEN}, {{ key }},
# %(password)s, <api-key>, $SECRET.
_PLACEHOLDER = re.compile(
    r"example|your|xxxx|\*\*\*|placeholder|changeme|change_me|dummy|sample|redacted|secret"
    r"|passw|key|token|private|credential|replace|insert|todo|fixme|\.\.\."
    r"|\$\{|\$\(|\{\{|%\(|^[$<{%]|[>}]$",
    re.I,
)
_DOTTED_NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")
_HEX = re.compile(r"[0-9a-fA-F]+")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HASH_WORDS = re.compile(r"hash|sha\d*|md5|digest|checksum|integrity|fingerprint|crc", re.I)
# Six characters in a row of an alphabet: test data ("abcdef...XYZ0123456789+/"), not a key.
_RUNS = "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789"
_SEQUENTIAL = re.compile("|".join(r[i : i + 6] for r in _RUNS for i in range(len(r) - 5)))
# Bits per character a quoted string needs to count as random: 4.5 is detect-secrets'
# default for base64 strings, which StarCoder used; a string of n characters cannot exceed
# log2(n) bits, so shorter strings need 90% of their maximum instead.
_MIN_ENTROPY = 4.5
_MAX_BLOBS = 8


def _entropy(value: str) -> float:
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


def _looks_secret(value: str) -> bool:
    """A value that can be a real credential, not a placeholder, a path, a word or a hash."""
    if _PLACEHOLDER.search(value) or "://" in value or value.startswith(("/", "./")):
        return False
    if _DOTTED_NAME.fullmatch(value):
        return False  # "ed25519.PrivateKey", "settings.API_KEY"
    if not any(c.isdigit() for c in value) or not any(c.isalpha() for c in value):
        return False
    return _UUID.fullmatch(value) is None


def _is_random_blob(value: str) -> bool:
    """A quoted string that reads as random characters: mixed case and digits, high entropy."""
    if not (
        any(c.isupper() for c in value)
        and any(c.islower() for c in value)
        and any(c.isdigit() for c in value)
    ):
        return False
    if value.count("/") >= 2 or value.count("_") >= 3 or value.count("-") >= 3:
        return False  # paths, snake_case names, dashed identifiers
    if "=" in value.rstrip("=") or _SEQUENTIAL.search(value):
        return False  # "=" only pads the end of base64; runs of an alphabet are test data
    if _HEX.fullmatch(value):
        return False  # hashes and checksums; a hex key is caught by the name it is given
    bar = min(_MIN_ENTROPY, 0.9 * math.log2(len(value)))
    return _entropy(value) >= bar and _looks_secret(value) and not _encodes_text(value)


def _encodes_text(value: str) -> bool:
    """Whether ``value`` is base64 of printable text ("VHdhcyBicmlsbGln" is "Twas brillig"):
    an encoded message or fixture, not a key, whose bytes would be random."""
    padded = value + "=" * (-len(value) % 4)
    try:
        data = base64.b64decode(padded, altchars=b"-_" if "-" in value or "_" in value else None)
    except (binascii.Error, ValueError):
        return False
    return len(data) >= 8 and all(32 <= b < 127 or b in (9, 10, 13) for b in data)


def _secret_name_ends(lowered: str) -> Iterator[int]:
    """Where a name ending in a secret word ends (the keyword is not followed by a letter)."""
    n = len(lowered)
    for word, ending in _SECRET_WORDS.items():
        at = lowered.find(word)
        while at != -1:
            end = ending.match(lowered, at + len(word))
            if end and (end.end() == n or lowered[end.end()] not in _WORD_CHARS):
                yield end.end()
            at = lowered.find(word, at + 1)
    at = lowered.find("key")
    while at != -1:
        end = at + 3
        if (end == n or lowered[end] not in _WORD_CHARS) and _KEY_QUALIFIER.search(
            lowered, max(0, at - 16), at
        ):
            yield end
        at = lowered.find("key", at + 1)


def _find_keys(text: str) -> Iterator[Redaction]:
    if "PRIVATE KEY" in text:
        for match in _PRIVATE_KEY.finditer(text):
            yield Redaction(match.start(3), match.end(3), "key")
    for kind, pattern in _KNOWN_FORMATS:
        for match in pattern.finditer(text):
            start, end = match.span()
            if kind == "key" and text.startswith("k_live_", start):
                start -= 1  # the "s" or "r" of sk_live_ / rk_live_
                if start < 0 or text[start] not in "sr":
                    continue
            if start > 0 and text[start - 1] in _TOKEN_CHARS:
                continue
            if end < len(text) and text[end] in _TOKEN_CHARS:
                continue
            if "EXAMPLE" not in match[0]:  # AWS's documented AKIAIOSFODNN7EXAMPLE
                yield Redaction(start, end, kind)
    for name_end in _secret_name_ends(text.lower()):
        match = _ASSIGNED_VALUE.match(text, name_end)
        if match is None:
            continue
        group = 2 if match[2] is not None else 3
        value = match[group]
        if group == 3 and _entropy(value) < 3.0:
            continue  # a bare word after "token:" is most often prose or a type name
        if _looks_secret(value):
            yield Redaction(match.start(group), match.end(group), "key")
    blobs = [
        Redaction(match.start(1), match.end(1), "key")
        for quote, pattern in _QUOTED_BLOBS.items()
        if quote in text
        for match in pattern.finditer(text)
        if _is_random_blob(match[1])
        and not _HASH_WORDS.search(_line_of(text, match.start(), match.end()))
    ]
    # Many random strings make a file of data (certificates, test vectors, encoded assets),
    # where one more is not a leaked credential.
    if len(blobs) <= _MAX_BLOBS:
        yield from blobs


# --- putting it together ----------------------------------------------------------------------


def find_secrets(text: str) -> list[Redaction]:
    """Every secret in ``text``, in order, without overlaps (keys and tokens win over the
    e-mail and IP addresses they contain, then the longer span wins)."""
    found = [*_find_keys(text), *_find_emails(text), *_find_ipv4(text), *_find_ipv6(text)]
    if not found:
        return []
    priority = {"token": 0, "key": 1, "email": 2, "ip_address": 3}
    chosen: list[Redaction] = []
    taken: list[tuple[int, int]] = []
    for r in sorted(found, key=lambda r: (priority[r.kind], r.start - r.end, r.start)):
        if all(r.end <= start or r.start >= end for start, end in taken):
            chosen.append(r)
            taken.append((r.start, r.end))
    return sorted(chosen)


def redact(text: str) -> tuple[str, dict[str, int]]:
    """``text`` with every secret replaced by its placeholder, and the count of each kind."""
    counts = dict.fromkeys(KINDS, 0)
    secrets = find_secrets(text)
    if not secrets:
        return text, counts
    parts = []
    position = 0
    for r in secrets:
        parts += [text[position : r.start], PLACEHOLDERS[r.kind]]
        position = r.end
        counts[r.kind] += 1
    parts.append(text[position:])
    return "".join(parts), counts


class RedactSecrets(PipelineStep):
    """Replace e-mail and IP addresses, keys and tokens by placeholders (module docstring).

    Counts ``redacted_<kind>`` per kind and ``documents_redacted``, and sets
    ``doc.metadata["redactions"]`` to the per-kind counts of each document.
    """

    type = "🔏 - PII"
    name = "🔑 Redact secrets"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            with self.track_time():
                doc.text, counts = redact(doc.text)
                doc.metadata["redactions"] = counts
                if any(counts.values()):
                    self.stat_update("documents_redacted")
                    for kind, count in counts.items():
                        if count:
                            self.stat_update(f"redacted_{kind}", value=count)
            self.stat_update("documents")
            yield doc
