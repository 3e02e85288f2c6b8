"""tabby-agent 1.5.0 (Tabby's editor agent, installed by `npm ci` in tests/serve/clients) as the
tests run it: where it is, the command line of it as a language server, the config it reads its
server and key from, and the edit every editor test completes."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import missing

CLIENTS = Path(__file__).parent / "clients"
AGENT = CLIENTS / "node_modules" / "tabby-agent" / "dist" / "cli.js"
# The key the test servers are started with, and the agent's token for them.
API_KEY = "test-token-1234"
# The cursor sits after "return " on a line that goes on ("  # sum"): tabby-agent's
# fill-in-line mode, in which it keeps a one-line completion.
BEFORE = "import os\n\n\ndef add(a, b):\n    return "
AFTER = "  # sum\n\n\nprint(add(1, 2))\n"


def node_program() -> str:
    """node, once tabby-agent is installed beside the tests; else `missing` with what to do."""
    found = shutil.which("node")
    if found is None:
        missing("needs node on PATH: install the Debian package nodejs")
    if not AGENT.exists():
        missing(f"needs tabby-agent in {CLIENTS} (scripts/setup.sh --dev runs npm ci there)")
    return found


def agent_command(node: str) -> list[str]:
    """tabby-agent as a language server on stdin/stdout."""
    return [node, str(AGENT), "--lsp", "--stdio"]


def agent_home(home: Path, endpoint: str) -> Path:
    """``home`` with the agent's config.toml: the server at ``endpoint``, asked with the key."""
    config = home / ".tabby-client" / "agent" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(
        f'[server]\nendpoint = "{endpoint}"\ntoken = "{API_KEY}"\n\n'
        "[anonymousUsageTracking]\ndisable = true\n"
    )
    return home
