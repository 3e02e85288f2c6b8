"""`geex data` end to end: every kind of source, shards `geex train` reads, the card's counts, bad input counted by reason, same output for any worker count. `pytest tests/data/test_pipeline.py`"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest

from geex.cli import main
from geex.data.fim import undo_fim
from geex.data.shards import TokenShards
from geex.tokenizer import load_tokenizer
from tests.data.trees import python_module, write_bad_tree, write_code_tree

FAST = ["--vocab-size", "600", "--validation-fraction", "0.2"]


def geex_data(*args) -> int:
    return main(["data", *map(str, args), *FAST])


def card(out: Path) -> dict:
    return json.loads((out / "card.json").read_text())


def removed(card: dict) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in card["removed"]:
        for reason, n in entry.get("removed", {}).items():
            counts[reason] = counts.get(reason, 0) + n
    return counts


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes() for p in sorted(out.glob("*-*.bin")) + sorted(out.glob("*.idx.npy"))
    }


@pytest.fixture(scope="module")
def code(tmp_path_factory) -> Path:
    root = write_code_tree(tmp_path_factory.mktemp("src") / "code", n_python=30, n_c=10)
    contact = python_module(999) + "\n\nMAINTAINER = 'jane.doe@geex-corp.org'\n"
    (root / "pkg" / "contact.py").write_text(contact)
    return root


@pytest.fixture(scope="module")
def benchmark(code, tmp_path_factory) -> Path:
    """A benchmark whose one task's solution is the body of one file of the tree."""
    path = tmp_path_factory.mktemp("bench") / "bench.jsonl"
    solution = (code / "pkg" / "mod_07.py").read_text()[:800]
    path.write_text(json.dumps({"task_id": "Bench/0", "canonical_solution": solution}) + "\n")
    return path


@pytest.fixture(scope="module")
def packed(code, benchmark, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out") / "data"
    options = ["--workers", "2", "--tasks", "2", "--decontaminate", benchmark]
    assert geex_data(code, "--out", out, *options) == 0
    return out


def documents(shards: TokenShards) -> list[list[int]]:
    """Each document's ids, end-of-document id included."""
    return [
        shards.read(int(row["offset"]), int(row["length"])).tolist() for row in shards.documents
    ]


def test_the_output_is_a_dataset_train_reads_with_tagged_files(packed):
    tokenizer = load_tokenizer(packed)
    train, validation = TokenShards(packed, "train"), TokenShards(packed, "validation")
    assert train.vocab_size == tokenizer.vocab_size and set(train.languages) == {"python", "c"}
    assert len(validation.documents) > 0
    tags = {"python": "# language: Python\n", "c": "// language: C\n"}
    for shards in (train, validation):
        for row, ids in zip(shards.documents, documents(shards), strict=True):
            assert ids[-1] == train.eod_id and train.eod_id not in ids[:-1]
            text = undo_fim(ids[:-1], tokenizer)  # FIM files back in reading order
            assert text.startswith(tags[shards.languages[row["language"]]])


def test_half_the_train_files_are_rearranged_for_fim_and_the_manifest_says_so(packed):
    tokenizer = load_tokenizer(packed)
    train, validation = TokenShards(packed, "train"), TokenShards(packed, "validation")
    fim = train.manifest["fim"]
    layouts = fim.pop("train_files")
    assert fim == {"rate": 0.5, "spm_rate": 0.5, "seed": 0, "style": "geex", "split": "train"}
    first = [ids[:2] for ids in documents(train)]
    pre, suf = tokenizer.fim_prefix_id, tokenizer.fim_suffix_id
    assert layouts == {
        "spm": sum(ids == [pre, suf] for ids in first),
        "psm": sum(ids[0] == pre and ids[1] != suf for ids in first),
        "plain": sum(ids[0] != pre for ids in first),
    }
    assert sum(layouts.values()) == len(train.documents) and layouts["psm"] and layouts["spm"]
    assert not any(ids[0] == pre for ids in documents(validation))


def test_the_card_counts_files_tokens_and_what_each_stage_removed(packed):
    c = card(packed)
    manifest = json.loads((packed / "dataset.json").read_text())
    # 30 modules + contact.py + 2 copies - 1 exact - 1 near copy - 1 contaminated
    assert c["languages"]["python"]["files"] == 30 and c["languages"]["c"]["files"] == 10
    assert c["read"]["files"] == 43  # 31 Python modules, 2 copies, 10 C files: before drops
    assert c["totals"]["tokens"] == sum(s["tokens"] for s in manifest["splits"].values())
    assert c["totals"]["validation_tokens"] == manifest["splits"]["validation"]["tokens"]
    assert removed(c) == {"exact_duplicate": 1, "near_duplicate": 1, "contaminated": 1}
    assert c["contaminated_tasks"] == ["Bench/0"]
    redacted = {k: n for e in c["removed"] for k, n in e.get("redacted", {}).items()}
    assert redacted == {"email": 1}
    markdown = (packed / "card.md").read_text()
    assert (
        "| python | 30 |" in markdown and "near_duplicate" in markdown and "`Bench/0`" in markdown
    )


def test_secrets_are_replaced_in_the_shards(packed):
    tokenizer, train = load_tokenizer(packed), TokenShards(packed, "train")
    validation = TokenShards(packed, "validation")
    text = tokenizer.decode(train.read(0, len(train)).tolist())
    text += tokenizer.decode(validation.read(0, len(validation)).tolist())
    assert "MAINTAINER = '<EMAIL>'" in text and "jane.doe" not in text


def test_worker_count_does_not_change_the_output_and_task_count_not_the_documents(
    code, benchmark, packed, tmp_path
):
    same = ["--decontaminate", benchmark]
    one_worker = tmp_path / "w1"
    assert geex_data(code, "--out", one_worker, "--workers", "1", "--tasks", "2", *same) == 0
    assert shard_bytes(one_worker) == shard_bytes(packed)
    assert (one_worker / "dataset.json").read_text() == (packed / "dataset.json").read_text()
    three_tasks = tmp_path / "t3"
    assert geex_data(code, "--out", three_tasks, "--workers", "2", "--tasks", "3", *same) == 0
    assert card(three_tasks)["languages"] == card(packed)["languages"]
    for split in ("train", "validation"):  # each file packed the same, FIM cuts included
        assert sorted(documents(TokenShards(three_tasks, split))) == sorted(
            documents(TokenShards(packed, split))
        )


def test_bad_input_never_stops_a_run_and_is_counted_by_reason_in_the_card(code, tmp_path):
    expected = write_bad_tree(tmp_path / "bad")
    (tmp_path / "corrupt.zip").write_bytes(b"PK\x03\x04 broken")
    empty_repo = tmp_path / "empty.git"
    subprocess.run(["git", "init", "-q", "--bare", str(empty_repo)], check=True)
    sources = [code, tmp_path / "bad", tmp_path / "corrupt.zip", empty_repo, tmp_path / "dangling"]
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    out = tmp_path / "out"
    assert geex_data(*sources, "--out", out, "--workers", "2", "--no-dedup") == 0
    counts = removed(card(out))
    expected["corrupt_archive"] = expected.get("corrupt_archive", 0) + 1
    expected["broken_symlink"] += 1
    expected["empty_repo"] += 1  # the bare repository, through the git reader
    for reason, n in expected.items():
        assert counts.get(reason) == n, (reason, counts)
    assert card(out)["languages"]["python"]["files"] == 33


def test_a_rerun_with_other_options_is_refused(packed, code, benchmark):
    done = ["--tasks", "2", "--workers", "2", "--decontaminate", benchmark]
    assert geex_data(code, "--out", packed, *done) == 0  # resumed: nothing left to do
    assert geex_data(code, "--out", packed, "--tasks", "2", "--dedup", "exact") == 2  # refused


def test_a_rerun_keeping_other_languages_is_refused(packed, code, benchmark, capsys):
    """``--languages`` decides which files are kept: a resume that changes it would mix two
    corpora, so it is refused like any other option that shapes the output."""
    done = ["--tasks", "2", "--workers", "2", "--decontaminate", benchmark]
    capsys.readouterr()
    assert geex_data(code, "--out", packed, *done, "--languages", "python") == 2
    assert "other options (languages)" in capsys.readouterr().err
    assert geex_data(code, "--out", packed, *done) == 0


def test_a_folder_recorded_before_the_later_options_still_resumes(packed, code, benchmark):
    """Folders written before --languages and the repository options were recorded lack them
    in their record; they resume, and the record gains them."""
    done = ["--tasks", "2", "--workers", "2", "--decontaminate", benchmark]
    path = packed / "work" / "config.json"
    record = json.loads(path.read_text())
    later = ("languages", "min_stars", "repo_metadata", "github_max_repos")
    assert set(later) <= set(record)
    path.write_text(json.dumps({k: v for k, v in record.items() if k not in later}))
    assert geex_data(code, "--out", packed, *done) == 0
    assert json.loads(path.read_text()) == record


def test_a_git_repository_and_a_dataset_file_are_sources_too(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    for i in range(3):
        (work / f"m{i}.py").write_text(python_module(500 + i))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(work)]
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "code"], check=True)
    bare = tmp_path / "repo.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        "".join(
            json.dumps({"content": python_module(600 + i), "lang": "Python", "path": f"r{i}.py"})
            + "\n"
            for i in range(2)
        )
    )
    out = tmp_path / "out"
    assert (
        geex_data(bare, rows, "--out", out, "--workers", "2", "--dataset-layout", "the-stack") == 0
    )
    assert card(out)["languages"]["python"]["files"] == 5


def test_with_no_source_it_packs_the_code_on_this_machine(tmp_path):
    out = tmp_path / "out"
    assert main(["data", "--out", str(out), "--per-language-mb", "0.3", "--vocab-size", "600"]) == 0
    c = card(out)
    assert c["sources"] == ["(embedded default: code on this machine)"]
    assert "python" in c["languages"]  # the running Python's standard library
    assert set(c["languages"]) <= {"python", "c", "cpp", "go", "java", "javascript", "rust"}
    assert all(row["bytes"] < 0.3 * 2**20 + 100_000 for row in c["languages"].values())
    assert len(TokenShards(out, "train")) > 0


def test_a_github_query_is_crawled_through_the_search_api(tmp_path, monkeypatch):
    """The search API is a loopback server; the repository it names is cloned over file://."""
    import http.server
    import threading

    work = tmp_path / "work"
    work.mkdir()
    for i in range(2):
        (work / f"g{i}.py").write_text(python_module(700 + i))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(work)]
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "code"], check=True)
    bare = tmp_path / "app.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    answer = json.dumps(
        {
            "total_count": 1,
            "incomplete_results": False,
            "items": [
                {
                    "full_name": "acme/app",
                    "clone_url": bare.as_uri(),
                    "stargazers_count": 9,
                    "size": 4,
                }
            ],
        }
    ).encode()
    queries = []

    class Search(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            queries.append((self.path, self.headers.get("Authorization")))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Search)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("GITHUB_TOKEN", "t0ken")
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        out = tmp_path / "out"
        assert (
            geex_data(
                "github:language:python", "--out", out, "--github-api-url", url, "--workers", "2"
            )
            == 0
        )
    finally:
        server.shutdown()
        server.server_close()
    assert card(out)["languages"]["python"]["files"] == 2
    assert (
        queries and "language:python" in unquote(queries[0][0]) and "t0ken" in (queries[0][1] or "")
    )
