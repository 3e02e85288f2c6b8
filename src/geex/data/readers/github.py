"""GitHub: find repositories with the search API, then clone and read them.

:class:`GitHubCrawler` asks ``/search/repositories?q=...&sort=stars`` for up to ``max_repos``
repositories, page by page (following the ``Link`` header), and hands the clone URLs, with
the stars, size and license the API reports, to :class:`~geex.data.readers.git.GitRepoReader`.

The search runs once per output: the first task to need it takes a lock in ``work_dir``,
searches and writes the listing (``github-search-<hash>.json``); the other tasks, and any
later run of the same pipeline, read that file, so every task splits the same list and a
resumed run reads the repositories the first run found. Delete the file to search again.

Rate limits: a 403 or 429 that carries ``Retry-After`` or ``X-RateLimit-Remaining: 0`` is
waited out when the wait (``Retry-After``, or ``X-RateLimit-Reset`` minus now) is at most
``max_wait_s``; a longer wait, a network error that outlasts the retries, or a response that is
not the JSON the API documents stops the search with a logged message, and the repositories
found so far are read. Such a listing is marked ``"complete": false``.

The token comes from ``token`` or, at run time, from ``GITHUB_TOKEN``; the environment is the
better place, since a pipeline's steps may be pickled to its logging folder.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlencode

from datatrove.data import Document
from datatrove.utils.logging import logger

from geex.atomic import atomic_write_text
from geex.data.readers.git import (
    DEFAULT_CLONE_TIMEOUT_S,
    DEFAULT_MAX_REPO_BYTES,
    GitRepoReader,
    RepoInfo,
    repo_name,
)
from geex.data.readers.local import DEFAULT_MAX_BYTES

# The search API returns at most 1,000 results, 100 per page.
_SEARCH_RESULT_CAP = 1000
_MAX_PER_PAGE = 100
_API_VERSION = "2022-11-28"
# GitHub documents no reset time for its secondary rate limit; it asks for a minute's pause.
_SECONDARY_LIMIT_WAIT_S = 60.0


class _SearchStopped(Exception):
    """The search cannot go on; the message says why and what to do."""

    def __init__(self, message: str, stat: str):
        super().__init__(message)
        self.stat = stat


def _next_link(link_header: str | None) -> str | None:
    """The ``rel="next"`` URL of a Link header: ``<https://...&page=2>; rel="next", ...``."""
    for part in (link_header or "").split(","):
        match = re.match(r"\s*<([^>]+)>\s*;(.*)", part)
        if match and re.search(r'rel="?next"?', match.group(2)):
            return match.group(1)
    return None


def _rate_limit_wait(status: int, headers) -> float | None:
    """Seconds to wait when the response is a rate limit, None when it is another error."""
    retry_after = headers.get("Retry-After")
    remaining = headers.get("X-RateLimit-Remaining")
    if retry_after is not None:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            try:  # an HTTP date
                return max(0.0, parsedate_to_datetime(retry_after).timestamp() - time.time())
            except (TypeError, ValueError):
                return _SECONDARY_LIMIT_WAIT_S
    if remaining == "0":
        try:
            return max(0.0, float(headers.get("X-RateLimit-Reset", "")) - time.time()) + 1.0
        except ValueError:
            return _SECONDARY_LIMIT_WAIT_S
    if status == 429:
        return _SECONDARY_LIMIT_WAIT_S
    return None


class GitHubCrawler(GitRepoReader):
    """Repositories from a GitHub search (``query`` as on github.com), cloned and read.

    ``min_stars`` adds ``stars:>=N`` to the query (unless it has a ``stars:`` qualifier) and is
    checked again on the stars the API reports. Clone options are those of
    :class:`~geex.data.readers.git.GitRepoReader`; ``max_size_kb`` compares with the API's
    ``size``. ``api_url`` points at GitHub Enterprise, or at a test server.
    """

    name = "GitHub search"

    def __init__(
        self,
        query: str,
        work_dir: str | os.PathLike,
        *,
        token: str | None = None,
        api_url: str = "https://api.github.com",
        max_repos: int = 100,
        min_stars: int | None = None,
        max_size_kb: int | None = None,
        max_repo_bytes: int = DEFAULT_MAX_REPO_BYTES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        depth: int | None = 1,
        clone_timeout_s: float = DEFAULT_CLONE_TIMEOUT_S,
        max_wait_s: float = 300.0,
        request_timeout_s: float = 30.0,
        retries: int = 3,
        retry_backoff_s: float = 2.0,
        keep_clones: bool = False,
    ):
        super().__init__(
            [],
            work_dir,
            max_repo_bytes=max_repo_bytes,
            depth=depth,
            max_bytes=max_bytes,
            clone_timeout_s=clone_timeout_s,
            keep_clones=keep_clones,
        )
        # Checked against the API's numbers, which GitRepoReader's metadata file would give.
        self.min_stars = min_stars
        self.max_size_kb = max_size_kb
        self.query = query
        self.token = token
        self.api_url = api_url.rstrip("/")
        self.max_repos = min(max_repos, _SEARCH_RESULT_CAP)
        self.max_wait_s = max_wait_s
        self.request_timeout_s = request_timeout_s
        self.retries = retries
        self.retry_backoff_s = retry_backoff_s

    @property
    def search_query(self) -> str:
        if self.min_stars is not None and "stars:" not in self.query:
            return f"{self.query} stars:>={self.min_stars}".strip()
        return self.query

    @property
    def listing_path(self) -> Path:
        key = json.dumps([self.api_url, self.search_query, self.max_repos])
        return self.work_dir / f"github-search-{hashlib.sha1(key.encode()).hexdigest()[:12]}.json"

    def run(self, data=None, rank: int = 0, world_size: int = 1) -> Iterator[Document]:
        if data:
            yield from data
        listing = self.listing()
        self.repos = [repo["clone_url"] for repo in listing]
        self.metadata = {}
        for repo in listing:
            info = RepoInfo(
                name=repo.get("full_name"),
                stars=repo.get("stars"),
                size_kb=repo.get("size_kb"),
                license=repo.get("license"),
            )
            self.metadata[repo_name(repo["clone_url"])] = info
        yield from super().run(None, rank, world_size)

    # -- the listing ----------------------------------------------------------------------------

    def listing(self) -> list[dict]:
        """The repositories found, from the listing file, searching first if there is none."""
        path = self.listing_path
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(path.name + ".lock"), "a") as lock:
            # One task searches; the others wait here, then read what it wrote.
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if not path.exists():
                    repos, complete = self.search()
                    listing = {"query": self.search_query, "complete": complete, "repos": repos}
                    atomic_write_text(path, json.dumps(listing, indent=1) + "\n")
                    if not complete:
                        logger.warning(
                            f"the GitHub search stopped early; {len(repos)} repositories are "
                            f"listed in {path}. Delete that file to search again."
                        )
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        try:
            return json.loads(path.read_text())["repos"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            logger.error(f"cannot read the GitHub search listing {path} ({err}); delete it")
            self.stat_update("github_search_failed")
            return []

    def search(self) -> tuple[list[dict], bool]:
        """Page through the search API: (repositories, whether the search ran to its end)."""
        params = {
            "q": self.search_query,
            "sort": "stars",
            "order": "desc",
            "per_page": min(_MAX_PER_PAGE, self.max_repos),
        }
        url: str | None = f"{self.api_url}/search/repositories?{urlencode(params)}"
        repos: list[dict] = []
        seen: set[str] = set()
        while url and len(repos) < self.max_repos:
            try:
                payload, url = self._get_page(url)
            except _SearchStopped as stop:
                logger.error(f"GitHub search: {stop}")
                self.stat_update(stop.stat)
                return repos, False
            self.stat_update("github_pages")
            items = payload["items"]
            for item in items:
                repo = self._repo_from_item(item)
                if repo is None:
                    self.stat_update("skipped_bad_search_item")
                    continue
                if repo["clone_url"] in seen:
                    continue
                seen.add(repo["clone_url"])
                repos.append(repo)
                if len(repos) >= self.max_repos:
                    break
            if not items:
                break
        return repos, True

    @staticmethod
    def _repo_from_item(item) -> dict | None:
        if not isinstance(item, dict):
            return None
        clone_url = item.get("clone_url")
        if not isinstance(clone_url, str) or not clone_url:
            return None
        license_ = item.get("license")
        if isinstance(license_, dict):
            license_ = license_.get("spdx_id")
        if not isinstance(license_, str) or license_ in ("", "NOASSERTION"):
            license_ = None
        stars, size = item.get("stargazers_count"), item.get("size")
        return {
            "full_name": item.get("full_name") if isinstance(item.get("full_name"), str) else None,
            "clone_url": clone_url,
            "stars": stars if isinstance(stars, int) else None,
            "size_kb": size if isinstance(size, int) else None,
            "license": license_,
        }

    def _headers(self) -> dict[str, str]:
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": _API_VERSION,
            "User-Agent": "geex-data",  # GitHub refuses requests without one
        }
        token = self.token or os.environ.get("GITHUB_TOKEN")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _get_page(self, url: str) -> tuple[dict, str | None]:
        """One page of results and the next page's URL; waits out rate limits it can."""
        failures = 0
        while True:
            request = urllib.request.Request(url, headers=self._headers())
            try:
                with urllib.request.urlopen(request, timeout=self.request_timeout_s) as response:
                    body, headers = response.read(), response.headers
                break
            except urllib.error.HTTPError as err:
                wait = _rate_limit_wait(err.code, err.headers) if err.code in (403, 429) else None
                detail = _error_message(err)
                err.close()
                if wait is not None:
                    if wait > self.max_wait_s:
                        advice = "run again later" + (
                            "" if "Authorization" in request.headers else ", or set GITHUB_TOKEN"
                        )
                        raise _SearchStopped(
                            f"rate limited (HTTP {err.code}) for {wait:.0f} s more, longer than "
                            f"max_wait_s={self.max_wait_s:g}; stopping ({advice})",
                            "github_rate_limited",
                        ) from None
                    logger.warning(f"GitHub rate limit: waiting {wait:.0f} s")
                    self.stat_update("github_rate_limit_waits")
                    time.sleep(wait)
                    continue
                if err.code >= 500 and failures < self.retries:
                    failures += 1
                    time.sleep(self.retry_backoff_s * failures)
                    continue
                hint = " (check the token)" if err.code in (401, 403) else ""
                raise _SearchStopped(
                    f"HTTP {err.code}{hint}: {detail}", "github_search_failed"
                ) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                if failures < self.retries:
                    failures += 1
                    time.sleep(self.retry_backoff_s * failures)
                    continue
                raise _SearchStopped(
                    f"cannot reach {self.api_url}: {err}", "github_search_failed"
                ) from None
        try:
            payload = json.loads(body)
        except ValueError:
            raise _SearchStopped(
                f"the response to {url} is not JSON: {body[:80]!r}", "github_bad_response"
            ) from None
        if not isinstance(payload, dict) or not isinstance(payload.get("items"), list):
            raise _SearchStopped(
                f"the response to {url} has no list of items", "github_bad_response"
            )
        return payload, _next_link(headers.get("Link"))


def _error_message(err: urllib.error.HTTPError) -> str:
    try:
        body = err.read(2000)
        message = json.loads(body).get("message")
        if isinstance(message, str):
            return message
    except (OSError, ValueError, AttributeError):
        return err.reason if isinstance(err.reason, str) else str(err)
    return body[:200].decode("utf-8", "replace")
