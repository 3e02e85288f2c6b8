"""`geex task VERB` against a running tasks server: the answer printed as the server gives it, and one-line errors. `pytest tests/serve/test_task_cli.py`."""

from __future__ import annotations

import http.server
import io
import os
import socket
import struct
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest

from geex.cli import main
from tests.conftest import free_port
from tests.serve.test_tasks_api import ADD_PY, engine, post, served, server  # noqa: F401


def run(capsys, *argv):
    code = main(["task", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


def test_translate_streams_the_servers_answer(capsys, server, tmp_path):  # noqa: F811
    source = tmp_path / "add.py"
    source.write_text(ADD_PY)
    code, out, err = run(capsys, "translate", str(source), "--to", "cpp", "--max-tokens", "40",
                         "--url", server.url)  # fmt: skip
    assert code == 0, err
    body = {"code": ADD_PY, "language": "python", "target": "cpp", "max_tokens": 40}
    _, answer, _ = post(server, "translate", body)
    assert answer["text"] and out == answer["text"] + "\n"
    assert f"[{answer['finish_reason']}, {answer['usage']['completion_tokens']} tokens]" in err


def test_as_a_filter_only_the_answer_reaches_the_shared_output(server, tmp_path):  # noqa: F811
    # Vim's :'<,'>!CMD runs CMD <selection >out 2>&1 and puts `out` in the buffer: the status
    # line must stay out of it. With stderr elsewhere it is still printed there.
    command = [sys.executable, "-m", "geex", "task", "translate", "-", "-l", "python",
               "--to", "cpp", "--max-tokens", "40", "--url", server.url]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    _, answer, _ = post(server, "translate", {"code": ADD_PY, "language": "python",
                                              "target": "cpp", "max_tokens": 40})  # fmt: skip
    status = f"[{answer['finish_reason']}, {answer['usage']['completion_tokens']} tokens]"
    with open(tmp_path / "out", "w+") as out:
        done = subprocess.run(command, input=ADD_PY, stdout=out, stderr=subprocess.STDOUT,
                              text=True, env=env, timeout=120)  # fmt: skip
        out.seek(0)
        assert done.returncode == 0 and out.read() == answer["text"] + "\n"
    done = subprocess.run(command, input=ADD_PY, capture_output=True, text=True, env=env,
                          timeout=120)  # fmt: skip
    assert done.stdout == answer["text"] + "\n" and done.stderr.strip() == status


def test_explain_from_stdin_whole_answer(capsys, monkeypatch, server):  # noqa: F811
    monkeypatch.setattr("sys.stdin", io.StringIO(ADD_PY))
    code, out, err = run(capsys, "explain", "-", "--language", "python", "--lang", "zh",
                         "--max-tokens", "8", "--no-stream", "--url", server.url)  # fmt: skip
    assert code == 0, err
    body = {"code": ADD_PY, "language": "python", "natural_language": "zh", "max_tokens": 8}
    _, answer, _ = post(server, "explain", body)
    assert out == answer["text"] + "\n"


def test_infill_splits_the_file_at_the_marker(capsys, server, tmp_path):  # noqa: F811
    source = tmp_path / "f.py"
    source.write_text("def f(x):\n    return <FILL>\n")
    code, out, err = run(capsys, "infill", str(source), "--max-tokens", "6", "--url", server.url,
                         "--no-stream")  # fmt: skip
    assert code == 0, err
    _, answer, _ = post(server, "infill", {"prefix": "def f(x):\n    return ", "suffix": "\n",
                                           "language": "python", "max_tokens": 6})  # fmt: skip
    assert out == answer["text"] + "\n"
    source.write_text("def f(x):\n    return\n")
    code, _, err = run(capsys, "infill", str(source), "--url", server.url)
    assert code == 2 and "has no <FILL> marking the gap" in one_line(err)


def test_server_errors_are_one_line(capsys, server, tmp_path):  # noqa: F811
    source = tmp_path / "add.py"
    source.write_text(ADD_PY)
    code, _, err = run(capsys, "translate", str(source), "--to", "klingon", "--url", server.url)
    assert code == 2
    assert one_line(err).startswith(
        "geex task: error: the server answered 400: target: unknown language 'klingon'; valid"
    )


def test_a_language_not_known_from_the_file_must_be_named(capsys, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    code, _, err = run(capsys, "explain", str(notes))
    assert code == 2 and "name the code's language with --language" in one_line(err)


def test_no_server_is_one_line(capsys, tmp_path):
    port = free_port()  # nothing listens on it once closed
    code, _, err = run(capsys, "ask", "what is a closure?", "--url", f"http://127.0.0.1:{port}")
    assert code == 2 and "cannot reach a server at http://127.0.0.1:" in one_line(err)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("8000", "--url must be an http:// or https:// URL"),
        ("http://127.0.0.1:abc", "is not a usable URL: nonnumeric port"),
        ("http://[::1", "is not a URL: Invalid IPv6 URL"),
    ],
)
def test_a_bad_url_is_one_line(capsys, url, says):
    code, _, err = run(capsys, "ask", "what is a closure?", "--url", url)
    assert code == 2 and says in one_line(err)


@pytest.mark.parametrize("stream", [True, False])
def test_a_server_that_is_not_geex_serve_is_one_line(capsys, stream):
    class Html(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"data: {not json\n" if stream else b"<html></html>")

        def log_message(self, *args):
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Html) as other:
        threading.Thread(target=other.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{other.server_address[1]}"
        flags = [] if stream else ["--no-stream"]
        code, _, err = run(capsys, "ask", "what is a closure?", "--url", url, *flags)
        other.shutdown()
    assert code == 2 and "did not answer as `geex serve` does" in one_line(err)


def test_the_openai_base_url_geex_serve_prints_is_taken(capsys, server):  # noqa: F811
    code, out, _ = run(capsys, "ask", "what is a closure?", "--url", server.url + "/v1/")
    assert code == 0 and out.strip()


@pytest.mark.parametrize("cut", ["close", "reset"])
def test_a_stream_cut_midway_keeps_the_text_and_says_so_in_one_line(capsys, cut):
    """A server that dies mid-answer: what came is printed, the break is one line, exit 2."""

    class Dying(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))  # unread, a close is a reset
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            event = b'data: {"text": "def add(a, b):"}\n\n'
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
            if cut == "reset":  # an RST, as a killed process's kernel sends
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))  # fmt: skip
            self.connection.close()
            self.close_connection = True

        def log_message(self, *args):
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Dying) as dying:
        threading.Thread(target=dying.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{dying.server_address[1]}"
        code, out, err = run(capsys, "ask", "what is a closure?", "--url", url)
        dying.shutdown()
    assert code == 2
    # A reset may reach the client before it has read the text: the kernel then drops it.
    assert out in ("def add(a, b):\n", "") if cut == "reset" else out == "def add(a, b):\n"
    says = {
        "close": "the server closed the stream before the answer ended",
        "reset": f"the connection to {url} broke: [Errno 104] Connection reset by peer",
    }
    assert says[cut] in one_line(err)


@pytest.mark.parametrize("error", [ConnectionResetError(104, "Connection reset by peer"),
                                   BrokenPipeError(32, "Broken pipe")])  # fmt: skip
def test_a_server_gone_while_the_question_is_sent_is_named(capsys, monkeypatch, error):
    """urllib reports a connection lost while it sends the request as a URLError: the server
    was reached, so "cannot reach a server" would mislead."""

    def gone(*args, **kwargs):
        raise urllib.error.URLError(error)

    monkeypatch.setattr(urllib.request, "urlopen", gone)
    code, _, err = run(capsys, "ask", "what is a closure?", "--url", "http://127.0.0.1:9")
    assert code == 2
    assert f"the connection to http://127.0.0.1:9 broke: {error}" in one_line(err)
