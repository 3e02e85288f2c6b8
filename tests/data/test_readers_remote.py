"""Remote readers read git clones, a GitHub search and dataset files offline, counting bad input.

`pytest tests/data/test_readers_remote.py` (bare repositories, a loopback HTTP server and
JSONL/Parquet files made in tmp_path; no network).
"""

from __future__ import annotations

import gzip
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from geex.data.readers.datasets import LAYOUTS, CodeDatasetReader, detect_layout
from geex.data.readers.git import GitRepoReader, detect_license, repo_name
from geex.data.readers.github import GitHubCrawler
from geex.errors import ConfigError, GeexError
from tests.conftest import finishes_within

MIT = (
    "MIT License\n\nCopyright (c) 2024 Acme\n\nPermission is hereby granted, free of charge, "
    "to any person obtaining a copy\nof this software...\n"
)
APACHE = "                                 Apache License\n                           Version 2.0, January 2004\n"
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(
        [*GIT, *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def make_repo(
    root: Path,
    name: str,
    files: dict[str, bytes | str],
    *,
    symlinks: dict[str, str] | None = None,
    submodules: tuple[str, ...] = (),
    allow_filter: bool = False,
) -> Path:
    """A bare repository ``root/name.git`` whose one commit holds ``files``."""
    work = root / "work" / name
    work.mkdir(parents=True)
    git("init", "-q", "-b", "main", str(work))
    for relpath, content in files.items():
        path = work / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    for relpath, target in (symlinks or {}).items():
        os.symlink(target, work / relpath)
    git("add", "-A", cwd=work)
    for relpath in submodules:  # a gitlink, as `git submodule add` records it
        git("update-index", "--add", "--cacheinfo", f"160000,{'1' * 40},{relpath}", cwd=work)
    git("commit", "-q", "-m", "init", cwd=work)
    bare = root / f"{name}.git"
    git("clone", "-q", "--bare", str(work), str(bare))
    if allow_filter:
        git("config", "uploadpack.allowFilter", "true", cwd=bare)
    return bare


def make_empty_repo(root: Path, name: str) -> Path:
    bare = root / f"{name}.git"
    git("init", "-q", "--bare", str(bare))
    return bare


# Files of the main test repository: what each one proves is in its name or value.
APP_FILES = {
    "app.py": "def main():\n    return 42\n",
    "lib/util.js": "export function twice(x) {\n  return 2 * x;\n}\n",
    "tool": "#!/usr/bin/env python3\nprint('hi')\n",  # no extension: its #! line names it
    "notes.txt": "not code\n",  # unknown language
    "blob.c": b"int x;\x00\x01\x02\n",  # binary
    "big.py": "x = 1\n" * 500,  # 3000 bytes: over max_bytes=2000
    "__pycache__/cached.py": "x = 1\n",  # excluded folder
    "LICENSE": MIT,
}
APP_DOCS = {"app.py", "lib/util.js", "tool"}


@pytest.fixture(scope="module")
def repos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("remotes") / "acme"
    root.mkdir()
    return {
        "app": make_repo(
            root,
            "app",
            APP_FILES,
            symlinks={"secret.py": "/etc/hostname"},
            submodules=("vendor/lib",),
            allow_filter=True,
        ),
        "tiny": make_repo(root, "tiny", {"main.go": "package main\n", "LICENSE": APACHE}),
        "empty": make_empty_repo(root, "empty"),
    }


def stats_of(step) -> dict:
    return {
        k: (v["total"] if isinstance(v, dict) else v)
        for k, v in step.stats.to_dict()["stats"].items()
    }


def clones_left(work_dir: Path) -> list[str]:
    folder = work_dir / "clones"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ---------------------------------------------------------------------------------------------
# GitRepoReader


def test_repository_files_become_documents_and_bad_files_are_counted(repos, tmp_path):
    reader = GitRepoReader([str(repos["app"])], tmp_path, max_bytes=2000, partial_clone=False)
    docs = list(reader.run())

    assert {d.metadata["path"] for d in docs} == APP_DOCS
    by_path = {d.metadata["path"]: d for d in docs}
    assert by_path["app.py"].text == APP_FILES["app.py"]
    assert by_path["tool"].metadata["language"] == "python"
    assert by_path["lib/util.js"].metadata["language"] == "javascript"
    for doc in docs:
        assert doc.metadata["source"] == str(repos["app"])
        assert doc.metadata["repo"] == "acme/app"
        assert doc.metadata["license"] == "MIT"
        assert doc.metadata["size_bytes"] == len(doc.text.encode())
        assert "stars" not in doc.metadata
    # The link to a file of this machine is skipped, never followed.
    hostname = Path("/etc/hostname").read_text() if Path("/etc/hostname").exists() else None
    assert all(d.text != hostname for d in docs)
    stats = stats_of(reader)
    assert stats["repos"] == 1
    assert stats["skipped_symlink"] == 1
    assert stats["skipped_submodule"] == 1
    assert stats["skipped_binary"] == 1
    assert stats["skipped_too_large"] == 1
    assert stats["skipped_unknown_language"] == 2  # notes.txt, LICENSE
    assert stats["documents"] == 3
    assert clones_left(tmp_path) == []  # the clone is deleted once read


def test_partial_clone_does_not_download_files_over_the_limit(repos, tmp_path):
    reader = GitRepoReader([str(repos["app"])], tmp_path, max_bytes=2000, keep_clones=True)
    docs = list(reader.run())
    assert {d.metadata["path"] for d in docs} == APP_DOCS
    assert stats_of(reader)["skipped_too_large"] == 1
    (clone,) = (tmp_path / "clones").iterdir()
    big_blob = git("rev-parse", "HEAD:big.py", cwd=repos["app"])
    missing = git("rev-list", "--objects", "--missing=print", "HEAD", cwd=clone).split()
    assert f"?{big_blob}" in missing


def test_unreadable_repositories_are_counted_and_the_others_read(repos, tmp_path):
    reader = GitRepoReader(
        [str(tmp_path / "nowhere" / "gone.git"), str(repos["empty"]), str(repos["tiny"])],
        tmp_path / "work",
    )
    docs = list(reader.run())
    assert [d.metadata["path"] for d in docs] == ["main.go"]
    assert docs[0].metadata["license"] == "Apache-2.0"
    stats = stats_of(reader)
    assert stats["skipped_clone_failed"] == 1
    assert stats["skipped_empty_repo"] == 1
    assert stats["repos"] == 1
    assert clones_left(tmp_path / "work") == []


def test_repository_over_the_size_limit_is_skipped_and_deleted(repos, tmp_path):
    reader = GitRepoReader([str(repos["app"])], tmp_path, max_repo_bytes=1000, partial_clone=False)
    assert list(reader.run()) == []
    assert stats_of(reader)["skipped_repo_too_large"] == 1
    assert clones_left(tmp_path) == []


class _Unauthorized(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="git"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_clone_never_waits_for_a_password_and_stops_at_its_time_limit(tmp_path):
    asks_password = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unauthorized)
    threading.Thread(target=asks_password.serve_forever, args=(0.05,), daemon=True).start()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)  # accepts connections and never answers
    try:
        urls = [
            f"http://127.0.0.1:{asks_password.server_address[1]}/acme/private.git",
            f"http://127.0.0.1:{silent.getsockname()[1]}/acme/slow.git",
        ]
        reader = GitRepoReader(urls, tmp_path, clone_timeout_s=1.5)
        # Without its time limit the clone from the silent server would wait forever.
        read = finishes_within(60, lambda: list(reader.run()), "cloning from a silent server")
        assert read == []
    finally:
        asks_password.shutdown()
        silent.close()
    stats = stats_of(reader)
    assert stats["skipped_clone_failed"] == 1  # the password prompt: refused, not waited on
    assert stats["skipped_clone_timeout"] == 1  # the silent server: stopped at the limit
    assert clones_left(tmp_path) == []


def test_metadata_limits_skip_repositories_before_cloning(repos, tmp_path):
    metadata = tmp_path / "repos.jsonl"
    metadata.write_text(
        json.dumps({"full_name": "acme/app", "stargazers_count": 50, "size": 10}) + "\n"
        + json.dumps({"repo": "acme/tiny", "stars": 5, "license": "BSD-3-Clause"}) + "\n"
    )  # fmt: skip
    urls = [str(repos["app"]), str(repos["tiny"]), str(repos["empty"])]
    reader = GitRepoReader(urls, tmp_path / "w1", min_stars=10, metadata_file=metadata)
    docs = list(reader.run())
    assert {d.metadata["repo"] for d in docs} == {"acme/app"}
    assert {d.metadata["stars"] for d in docs} == {50}
    stats = stats_of(reader)
    assert stats["skipped_below_min_stars"] == 1  # tiny
    assert stats["skipped_no_metadata"] == 1  # empty: not listed, stars unknown

    csv_file = tmp_path / "repos.csv"
    csv_file.write_text("repo_name,stars,size_kb,license\nacme/app,50,999999,\nacme/tiny,5,3,MIT\n")
    reader = GitRepoReader(urls[:2], tmp_path / "w2", max_size_kb=100, metadata_file=csv_file)
    docs = list(reader.run())
    assert {(d.metadata["repo"], d.metadata["stars"], d.metadata["license"]) for d in docs} == {
        ("acme/tiny", 5, "MIT")  # the metadata's license wins over the LICENSE file's
    }
    assert stats_of(reader)["skipped_repo_too_large"] == 1

    with pytest.raises(ConfigError, match="metadata_file"):
        GitRepoReader(urls, tmp_path, min_stars=10)


def test_tasks_split_the_repositories(repos, tmp_path):
    urls = [str(repos["app"]), str(repos["tiny"])]
    whole = {d.id for d in GitRepoReader(urls, tmp_path / "all").run()}
    parts = [
        {d.id for d in GitRepoReader(urls, tmp_path / f"r{rank}").run(rank=rank, world_size=2)}
        for rank in range(2)
    ]
    assert parts[0] and parts[1]
    assert parts[0].isdisjoint(parts[1])
    assert parts[0] | parts[1] == whole


def test_a_complete_clone_left_by_a_killed_task_is_read_without_cloning(repos, tmp_path):
    first = list(GitRepoReader([str(repos["tiny"])], tmp_path, keep_clones=True).run())
    moved = repos["tiny"].with_name("moved.git")
    repos["tiny"].rename(moved)  # cloning again would now fail
    try:
        reader = GitRepoReader([str(repos["tiny"])], tmp_path)
        again = list(reader.run())
    finally:
        moved.rename(repos["tiny"])
    assert [d.id for d in again] == [d.id for d in first]
    assert "skipped_clone_failed" not in stats_of(reader)
    assert clones_left(tmp_path) == []


def test_pipeline_tasks_read_every_repository_once_and_a_rerun_clones_nothing(repos, tmp_path):
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.writers import JsonlWriter

    urls = [str(repos["app"]), str(repos["tiny"])]

    def run_pipeline():
        reader = GitRepoReader(urls, tmp_path / "work", max_bytes=2000)
        writer = JsonlWriter(str(tmp_path / "out"), compression=None)
        executor = LocalPipelineExecutor(
            [reader, writer], tasks=2, workers=1, logging_dir=str(tmp_path / "logs")
        )
        executor.run()

    run_pipeline()
    out = [
        json.loads(line) for f in sorted((tmp_path / "out").glob("*.jsonl")) for line in f.open()
    ]
    assert sorted(d["metadata"]["path"] for d in out) == sorted([*APP_DOCS, "main.go"])

    moved = repos["tiny"].with_name("moved.git")
    repos["tiny"].rename(moved)  # a clone attempt would now fail
    try:
        run_pipeline()  # both tasks are complete: nothing runs
    finally:
        moved.rename(repos["tiny"])
    again = [
        json.loads(line) for f in sorted((tmp_path / "out").glob("*.jsonl")) for line in f.open()
    ]
    assert again == out
    assert clones_left(tmp_path / "work") == []


def test_readers_pickle_for_multiprocess_executors(repos, tmp_path):
    import pickle

    readers = [
        GitRepoReader(str(repos["tiny"]), tmp_path),  # one repository, given as a string
        GitHubCrawler("q", tmp_path, api_url="http://127.0.0.1:9"),
        CodeDatasetReader(
            str(write_jsonl(tmp_path / "a.jsonl", [stack_row(PY, "Python", "f.py")]))
        ),
    ]
    for reader in readers:
        copy = pickle.loads(pickle.dumps(reader))
        assert type(copy) is type(reader)
    docs = list(pickle.loads(pickle.dumps(readers[0])).run())
    assert [d.metadata["path"] for d in docs] == ["main.go"]


def test_repository_list_file(repos, tmp_path):
    listing = tmp_path / "repos.txt"
    listing.write_text(f"# test repositories\n{repos['tiny']}\n\n{repos['tiny']}\n")
    reader = GitRepoReader(listing, tmp_path / "work")
    assert reader.repos == [str(repos["tiny"])]
    with pytest.raises(GeexError, match="repository list"):
        GitRepoReader(tmp_path / "missing.txt", tmp_path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MIT, "MIT"),
        (APACHE, "Apache-2.0"),
        ("GNU GENERAL PUBLIC LICENSE\nVersion 3, 29 June 2007\n", "GPL-3.0"),
        ("GNU LESSER GENERAL PUBLIC LICENSE\nVersion 2.1, February 1999", "LGPL-2.1"),
        (
            "Redistribution and use in source and binary forms, with or without modification... "
            "Neither the name of the copyright holder nor the names of its contributors",
            "BSD-3-Clause",
        ),
        ("Redistribution and use in source and binary forms, with or without", "BSD-2-Clause"),
        ("// SPDX-License-Identifier: MPL-2.0\n", "MPL-2.0"),
        ("All rights reserved.", None),
    ],
)
def test_detect_license(text, expected):
    assert detect_license(text) == expected


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/Acme/App.git",
        "https://token@github.com/acme/app",
        "git@github.com:acme/app.git",
        "/srv/mirrors/acme/app.git/",
        "file:///srv/mirrors/acme/app.git",
    ],
)
def test_repo_name(url):
    assert repo_name(url) == "acme/app"


# ---------------------------------------------------------------------------------------------
# GitHubCrawler against a fake search API on loopback


class FakeGitHub:
    """Serves scripted answers to /search/repositories, one list of answers per page number."""

    def __init__(self):
        self.pages: dict[int, list[tuple[int, dict, bytes]]] = {}
        self.requests: list[tuple[dict, dict]] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                fake.requests.append((query, dict(self.headers)))
                answers = fake.pages.get(int(query.get("page", "1")), [])
                status, headers, body = answers.pop(0) if len(answers) > 1 else answers[0]
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value.replace("{base}", fake.url))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def page(self, number: int, items: list[dict], last: int) -> tuple[int, dict, bytes]:
        headers = {"Content-Type": "application/json"}
        if number < last:
            nxt = f"{{base}}/search/repositories?q=x&page={number + 1}"
            headers["Link"] = (
                f'<{nxt}>; rel="next", <{{base}}/search/repositories?page={last}>; rel="last"'
            )
        body = {"total_count": 3, "incomplete_results": False, "items": items}
        return 200, headers, json.dumps(body).encode()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def item(name: str, bare: Path, stars: int, license_: str | None = None) -> dict:
    return {
        "full_name": name,
        "clone_url": bare.as_uri(),
        "stargazers_count": stars,
        "size": 12,
        "license": {"key": license_.lower(), "spdx_id": license_} if license_ else None,
    }


@pytest.fixture
def github(repos):
    fake = FakeGitHub()
    items = [
        item("acme/app", repos["app"], 50, "Apache-2.0"),
        item("acme/tiny", repos["tiny"], 20),
        item("acme/empty", repos["empty"], 10),
    ]
    fake.pages[1] = [fake.page(1, items[:2], last=2)]
    fake.pages[2] = [fake.page(2, items[2:], last=2)]
    yield fake
    fake.close()


def test_crawler_pages_through_the_search_and_reads_the_repositories(github, tmp_path, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", "t0ken")
    crawler = GitHubCrawler(
        "language:python", tmp_path, api_url=github.url, min_stars=5, max_bytes=2000
    )
    docs = list(crawler.run())

    assert {d.metadata["repo"] for d in docs} == {"acme/app", "acme/tiny"}
    app = [d for d in docs if d.metadata["repo"] == "acme/app"]
    assert {d.metadata["path"] for d in app} == APP_DOCS
    assert {(d.metadata["stars"], d.metadata["license"]) for d in app} == {(50, "Apache-2.0")}
    tiny = [d for d in docs if d.metadata["repo"] == "acme/tiny"]
    assert tiny[0].metadata["license"] == "Apache-2.0"  # none from the API: the LICENSE file's
    stats = stats_of(crawler)
    assert stats["github_pages"] == 2
    assert stats["skipped_empty_repo"] == 1
    query, headers = github.requests[0]
    assert query["q"] == "language:python stars:>=5"
    assert query["sort"] == "stars"
    assert headers["Authorization"] == "Bearer t0ken"
    assert clones_left(tmp_path) == []

    # Every later task, and a resumed run, reads the listing instead of searching again.
    github.close()
    again = GitHubCrawler(
        "language:python", tmp_path, api_url=github.url, min_stars=5, max_bytes=2000
    )
    assert sorted(d.id for d in again.run()) == sorted(d.id for d in docs)


def test_crawler_stops_at_max_repos(github, tmp_path):
    crawler = GitHubCrawler("q", tmp_path, api_url=github.url, max_repos=1)
    docs = list(crawler.run())
    assert {d.metadata["repo"] for d in docs} == {"acme/app"}
    assert len(github.requests) == 1


def test_crawler_waits_out_a_short_rate_limit(github, tmp_path):
    reset = str(int(time.time()))
    limited = (403, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}, b"{}")
    github.pages[2].insert(0, limited)
    crawler = GitHubCrawler("q", tmp_path, api_url=github.url, max_wait_s=10)
    docs = list(crawler.run())
    assert {d.metadata["repo"] for d in docs} == {"acme/app", "acme/tiny"}
    stats = stats_of(crawler)
    assert stats["github_rate_limit_waits"] == 1
    assert stats["skipped_empty_repo"] == 1  # page 2 was read after the wait
    assert json.loads(crawler.listing_path.read_text())["complete"] is True


class _NoSleep:
    """The time module, but a call to sleep fails the test instead of waiting."""

    def __getattr__(self, name):
        return getattr(time, name)

    @staticmethod
    def sleep(seconds):
        raise AssertionError(f"went to sleep for {seconds:g} s instead of stopping")


def test_crawler_stops_cleanly_on_a_long_rate_limit(github, tmp_path, monkeypatch):
    github.pages[2] = [(429, {"Retry-After": "3600"}, b'{"message": "slow down"}')]
    crawler = GitHubCrawler("q", tmp_path, api_url=github.url, max_wait_s=5)
    monkeypatch.setattr("geex.data.readers.github.time", _NoSleep())
    docs = list(crawler.run())
    assert {d.metadata["repo"] for d in docs} == {"acme/app", "acme/tiny"}  # page 1's
    assert stats_of(crawler)["github_rate_limited"] == 1
    listing = json.loads(crawler.listing_path.read_text())
    assert listing["complete"] is False
    assert len(listing["repos"]) == 2


@pytest.mark.parametrize(
    ("answer", "stat"),
    [
        ((200, {}, b"<html>not json"), "github_bad_response"),
        ((200, {}, b'{"items": "none"}'), "github_bad_response"),
        ((401, {}, b'{"message": "Bad credentials"}'), "github_search_failed"),
    ],
)
def test_crawler_survives_bad_answers(github, tmp_path, answer, stat):
    github.pages[1] = [answer]
    crawler = GitHubCrawler("q", tmp_path, api_url=github.url, retries=0)
    assert list(crawler.run()) == []
    assert stats_of(crawler)[stat] == 1


# ---------------------------------------------------------------------------------------------
# CodeDatasetReader


def stack_row(content, lang, path, repo="acme/app", stars=3, licenses=("MIT",)) -> dict:
    """A row with The Stack's columns (bigcode/the-stack-dedup)."""
    return {
        "hexsha": "0" * 40,
        "size": len(content) if isinstance(content, str) else 0,
        "ext": path.rsplit(".", 1)[-1],
        "lang": lang,
        "max_stars_repo_path": path,
        "max_stars_repo_name": repo,
        "max_stars_repo_licenses": list(licenses),
        "max_stars_count": stars,
        "content": content,
        "avg_line_length": 10.0,
        "max_line_length": 20,
        "alphanum_fraction": 0.5,
    }


PY = "def f():\n    return 1\n"


def write_jsonl(path: Path, rows: list, extra_lines: tuple[str, ...] = ()) -> Path:
    lines = [json.dumps(r) for r in rows] + list(extra_lines)
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def write_parquet(path: Path, rows: list[dict], row_group_size: int = 1000) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=row_group_size)
    return path


def test_the_stack_rows_become_documents_and_bad_rows_are_counted(tmp_path):
    rows = [
        stack_row(PY, "Python", "src/f.py", stars=12),
        stack_row("int g() { return 2; }\n", "C++", "lib/g.cc", repo="acme/lib", stars=None),
        stack_row("fn h() {}\n", "Batchfile", "h.rs", licenses=("MIT", "Apache-2.0")),
        stack_row(PY, "Python", "src/f.py", repo="other/fork"),  # same path, another repo
        stack_row("{}", "Jupyter Notebook", "nb.ipynb"),
        stack_row(42, "Python", "n.py"),
        stack_row("   \n", "Python", "blank.py"),
        {k: v for k, v in stack_row(PY, "Python", "x.py").items() if k != "content"},
    ]
    source = write_jsonl(tmp_path / "stack.jsonl.gz", rows, extra_lines=('{"content": broken',))
    reader = CodeDatasetReader(str(source))
    docs = list(reader.run())

    assert [(d.metadata["path"], d.metadata["language"]) for d in docs] == [
        ("src/f.py", "python"),
        ("lib/g.cc", "cpp"),
        ("h.rs", "rust"),  # a name the registry does not know: the extension decides
        ("src/f.py", "python"),
    ]
    first = docs[0]
    assert first.text == PY
    assert first.metadata == {
        "language": "python",
        "path": "src/f.py",
        "source": str(source),
        "size_bytes": len(PY),
        "repo": "acme/app",
        "stars": 12,
        "license": "MIT",
    }
    assert "stars" not in docs[1].metadata
    assert docs[2].metadata["license"] == "MIT AND Apache-2.0"
    assert len({d.id for d in docs}) == 4
    stats = stats_of(reader)
    assert stats["skipped_unknown_language"] == 1
    assert stats["skipped_bad_row"] == 3  # content 42, no content, broken JSON
    assert stats["skipped_empty"] == 1
    assert stats["documents"] == 4


def test_codeparrot_rows_become_documents(tmp_path):
    clean = [  # codeparrot/codeparrot-clean: Python only, no language column
        {"repo_name": "acme/app", "path": "a/b.py", "copies": "2", "size": str(len(PY)),
         "content": PY, "license": "mit", "hash": "h", "line_mean": 10.0, "line_max": 20,
         "alpha_frac": 0.5, "autogenerated": False},
        {"repo_name": "acme/app", "path": "a/c.py", "copies": "1", "size": "0", "content": None,
         "license": "mit", "hash": "h", "line_mean": 0.0, "line_max": 0, "alpha_frac": 0.0,
         "autogenerated": False},
    ]  # fmt: skip
    github_code = [  # codeparrot/github-code: "code" and "language"
        {"code": "package main\n", "repo_name": "acme/go", "path": "main.go", "language": "GO",
         "license": "apache-2.0", "size": 13},
        {"code": "program p\nend program p\n", "repo_name": "acme/f", "path": "p.f90",
         "language": "FORTRAN", "license": "gpl-3.0", "size": 24},
    ]  # fmt: skip
    parquet = write_parquet(tmp_path / "clean.parquet", clean)
    jsonl = write_jsonl(tmp_path / "github-code.jsonl", github_code)
    reader = CodeDatasetReader([str(parquet), str(jsonl)], layout="codeparrot")
    docs = list(reader.run())
    assert [(d.metadata["repo"], d.metadata["language"], d.metadata["license"]) for d in docs] == [
        ("acme/app", "python", "mit"),
        ("acme/go", "go", "apache-2.0"),
        ("acme/f", "fortran", "gpl-3.0"),
    ]
    assert stats_of(reader)["skipped_bad_row"] == 1  # content null


def test_layout_is_detected_from_the_columns(tmp_path):
    assert detect_layout(stack_row(PY, "Python", "f.py")) is LAYOUTS["the-stack"]
    assert detect_layout(["repo_name", "path", "content", "license"]) is LAYOUTS["codeparrot"]
    assert detect_layout(["code", "repo_name", "path", "language"]) is LAYOUTS["codeparrot"]
    assert detect_layout(["text", "id"]) is None

    stack = write_parquet(tmp_path / "a.parquet", [stack_row(PY, "Python", "f.py")])
    parrot = write_jsonl(
        tmp_path / "b.jsonl", [{"repo_name": "r/x", "path": "g.py", "content": PY}]
    )
    other = write_jsonl(tmp_path / "c.jsonl", [{"text": PY, "id": 1}])
    reader = CodeDatasetReader(str(tmp_path))  # a folder: all three, in sorted order
    assert [d.metadata["path"] for d in reader.run()] == ["f.py", "g.py"]
    assert stats_of(reader)["skipped_unknown_layout"] == 1
    assert {stack.name, parrot.name, other.name} == {Path(f).name for f in reader.files}


def _ids(reader, rank, world_size):
    return [d.id for d in reader.run(rank=rank, world_size=world_size)]


@pytest.mark.parametrize("world_size", [2, 3])
def test_tasks_split_files_and_rows(tmp_path, world_size):
    rows = [stack_row(f"x = {i}\n", "Python", f"m{i}.py") for i in range(10)]
    cases = {
        "files": [str(write_parquet(tmp_path / f"p{i}.parquet", rows[i::3])) for i in range(3)],
        "parquet rows": [str(write_parquet(tmp_path / "one.parquet", rows, row_group_size=4))],
        "jsonl rows": [str(write_jsonl(tmp_path / "one.jsonl.gz", rows))],
    }
    for case, files in cases.items():
        reader = CodeDatasetReader(files)
        whole = _ids(reader, 0, 1)
        parts = [_ids(CodeDatasetReader(files), rank, world_size) for rank in range(world_size)]
        assert len(whole) == 10, case
        every = [doc_id for part in parts for doc_id in part]
        assert sorted(every) == sorted(whole), case  # each row read by exactly one task
        assert all(parts), case


def test_limit_caps_each_task(tmp_path):
    rows = [stack_row(f"x = {i}\n", "Python", f"m{i}.py") for i in range(10)]
    source = str(write_jsonl(tmp_path / "rows.jsonl", rows))
    assert len(list(CodeDatasetReader(source, limit=3).run())) == 3
    assert len(list(CodeDatasetReader(source, limit=3).run(rank=1, world_size=2))) == 3
    with pytest.raises(ConfigError):
        CodeDatasetReader(source, limit=0)


def test_corrupt_files_are_counted_and_the_rest_read(tmp_path):
    rows = [stack_row(f"x = {i}\n", "Python", f"m{i}.py") for i in range(200)]
    good = write_parquet(tmp_path / "good.parquet", rows[:3])
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 this is not parquet")
    truncated = gzip.compress("\n".join(json.dumps(r) for r in rows).encode())
    (tmp_path / "cut.jsonl.gz").write_bytes(truncated[: len(truncated) // 2])
    reader = CodeDatasetReader(
        [str(tmp_path / "bad.parquet"), str(good), str(tmp_path / "cut.jsonl.gz")]
    )
    docs = list(reader.run())
    from_good = [d for d in docs if d.metadata["source"] == str(good)]
    assert len(from_good) == 3
    assert 0 < len(docs) - 3 < 200  # the truncated file's rows before the break are kept
    assert stats_of(reader)["skipped_corrupt_file"] == 2


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(GeexError, match="no such file"):
        CodeDatasetReader(str(tmp_path / "nope.parquet"))


def test_hub_name_without_the_datasets_library_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(GeexError, match=r"geex\[hub\]"):
        CodeDatasetReader("bigcode/the-stack-smol")


def test_hub_out_of_reach_says_to_download_the_files(monkeypatch):
    # An optional extra that CI does not install: a plain skip, not `missing`.
    pytest.importorskip("datasets", reason="needs the optional extra geex[hub] (datasets)")
    import datasets.config
    import huggingface_hub.constants

    # Offline mode fails at once, as a machine without network does after its retries.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    reader = CodeDatasetReader("bigcode/the-stack-smol", hub_options={"data_dir": "data/python"})
    with pytest.raises(GeexError, match="download its JSONL or Parquet files"):
        list(reader.run())
