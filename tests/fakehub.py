"""A small in-process fake Hugging Face Hub (stdlib HTTP server) following the contracts in integrations.md §3.2."""
from __future__ import annotations

import base64
import contextlib
import datetime as dt
import fnmatch
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, unquote, urlparse

import pytest

PAGE = 2  # small pages so every listing test exercises Link-header pagination


@dataclass
class Repo:
    """A model repo: an append-only list of commits, each a full snapshot of the files."""

    repo_id: str
    private: bool = False
    created: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    commits: list[tuple[str, dict[str, bytes]]] = field(default_factory=list)

    @property
    def head(self) -> tuple[str, dict[str, bytes]]:
        return self.commits[-1] if self.commits else ("0" * 40, {})

    def at(self, rev: str) -> tuple[str, dict[str, bytes]] | None:
        if rev in ("main", "refs/heads/main"):
            return self.head
        return next((c for c in self.commits if c[0] == rev), None)

    def info(self, rev: str = "main") -> dict[str, Any]:
        sha, files = self.at(rev) or self.head
        readme = files.get("README.md", b"").decode(errors="replace")
        tags = _front_matter_tags(readme)
        return {"id": self.repo_id, "modelId": self.repo_id, "sha": sha, "private": self.private,
                "siblings": [{"rfilename": p} for p in sorted(files)], "tags": tags, "createdAt": self.created,
                "lastModified": self.created, "author": self.repo_id.split("/")[0], "downloads": 0, "likes": 0}


def _front_matter_tags(readme: str) -> list[str]:
    if not readme.startswith("---"):
        return []
    body = readme.split("---", 2)[1]
    return [line.strip()[2:].strip() for line in body.splitlines() if line.strip().startswith("- ")]


class FakeHub:
    """Start with ``with FakeHub() as hub:``; ``hub.url`` is the endpoint; ``hub.log`` records requests."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.log: list[str] = []
        self.fail: set[str] = set()  # repo ids whose file downloads answer 500 (a broken repo)
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "FakeHub":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def commit(self, repo_id: str, files: dict[str, bytes], deleted: tuple[str, ...] = (),
               private: bool | None = None) -> str:
        """Add a commit (creating the repo if needed) and return its sha."""
        with self.lock:
            repo = self.repos.setdefault(repo_id, Repo(repo_id, bool(private)))
            snapshot = dict(repo.head[1])
            snapshot.update(files)
            for path in deleted:
                snapshot.pop(path, None)
            digest = hashlib.sha1(repo_id.encode() + str(len(repo.commits)).encode())
            for path in sorted(snapshot):
                digest.update(path.encode() + hashlib.sha1(snapshot[path]).digest())
            sha = digest.hexdigest()
            repo.commits.append((sha, snapshot))
            return sha


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet; requests go to hub.log instead
            pass

        def _send(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None,
                  ctype: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, data: Any, code: int = 200, headers: dict[str, str] | None = None) -> None:
            self._send(code, json.dumps(data).encode(), headers)

        def _error(self, code: int, kind: str) -> None:
            self._send(code, json.dumps({"error": kind}).encode(), {"X-Error-Code": kind})

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            url = urlparse(self.path)
            path, query = unquote(url.path), parse_qs(url.query)
            hub.log.append(f"{self.command} {self.path}")
            if path == "/api/models":
                return self._list(query)
            if path == "/api/whoami-v2":
                return self._json({"type": "user", "name": "tester", "orgs": []})
            if path.startswith("/api/models/"):
                return self._api_model(path[len("/api/models/"):])
            if "/resolve/" in path:
                return self._resolve(path.lstrip("/"))
            self._error(404, "NotFound")

        def _list(self, query: dict[str, list[str]]) -> None:
            items = [r for r in hub.repos.values() if not r.private and r.commits]
            if "search" in query:
                items = [r for r in items if query["search"][0].lower() in r.repo_id.lower()]
            if "author" in query:
                items = [r for r in items if r.repo_id.split("/")[0] == query["author"][0]]
            for tag in query.get("filter", []):
                items = [r for r in items if tag in r.info()["tags"]]
            limit = int(query.get("limit", ["1000"])[0])
            cursor = int(query.get("cursor", ["0"])[0])
            page = items[cursor:cursor + min(PAGE, limit)]
            headers = {}
            if cursor + len(page) < min(len(items), limit):
                rest = "&".join(f"{k}={v}" for k, vs in query.items() if k != "cursor" for v in vs)
                headers["Link"] = f'<{hub.url}/api/models?{rest}&cursor={cursor + len(page)}>; rel="next"'
            self._json([r.info() for r in page], headers=headers)

        def _api_model(self, rest: str) -> None:
            parts = rest.split("/")
            repo = hub.repos.get("/".join(parts[:2]))
            if repo is None or not repo.commits:
                return self._error(404, "RepoNotFound")
            tail = parts[2:]
            if not tail:
                return self._json(repo.info())
            if tail[0] == "revision" and len(tail) > 1:
                rev = "/".join(tail[1:])
                return self._json(repo.info(rev)) if repo.at(rev) else self._error(404, "RevisionNotFound")
            if tail[0] == "tree" and len(tail) > 1:
                found = repo.at(tail[1])
                if found is None:
                    return self._error(404, "RevisionNotFound")
                prefix = "/".join(tail[2:]).rstrip("/") + "/" if tail[2:] else ""
                return self._json([{"type": "file", "oid": hashlib.sha1(b).hexdigest(), "size": len(b), "path": p}
                                   for p, b in sorted(found[1].items()) if p.startswith(prefix)])
            if tail[0] == "refs":
                return self._json({"branches": [{"name": "main", "ref": "refs/heads/main",
                                                 "targetCommit": repo.head[0]}], "tags": [], "converts": []})
            self._error(404, "NotFound")

        def _resolve(self, path: str) -> None:
            repo_part, rest = path.split("/resolve/", 1)
            repo = hub.repos.get(repo_part)
            if repo is None or not repo.commits:
                return self._error(404, "RepoNotFound")
            rev, _, fname = rest.partition("/")
            found = repo.at(rev)
            if found is None:
                return self._error(404, "RevisionNotFound")
            if fname not in found[1]:
                return self._error(404, "EntryNotFound")
            if repo_part in hub.fail and self.command == "GET":
                return self._error(500, "InternalError")
            data = found[1][fname]
            self._send(200, data, {"X-Repo-Commit": found[0], "ETag": f'"{hashlib.sha1(data).hexdigest()}"'},
                       ctype="application/octet-stream")

        def do_POST(self) -> None:
            url = urlparse(self.path)
            path = unquote(url.path)
            hub.log.append(f"POST {self.path}")
            body = self._body()
            if path == "/api/repos/create":
                return self._create(json.loads(body or b"{}"))
            if path == "/api/validate-yaml":
                return self._json({"errors": [], "warnings": []})
            if path.startswith("/api/models/") and "/preupload/" in path:
                files = json.loads(body).get("files", [])
                return self._json({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                             for f in files]})
            if path.startswith("/api/models/") and "/commit/" in path:
                return self._commit(path[len("/api/models/"):].split("/commit/")[0], body)
            self._error(404, "NotFound")

        def _create(self, data: dict[str, Any]) -> None:
            repo_id = f"{data.get('organization') or 'tester'}/{data['name']}"
            with hub.lock:
                if repo_id in hub.repos:
                    return self._json({"error": "exists", "url": f"{hub.url}/{repo_id}"}, 409)
                private = bool(data.get("private")) or data.get("visibility") == "private"
                hub.repos[repo_id] = Repo(repo_id, private)
            hub.commit(repo_id, {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"})
            self._json({"url": f"{hub.url}/{repo_id}", "name": repo_id})

        def _commit(self, repo_id: str, body: bytes) -> None:
            if repo_id not in hub.repos:
                return self._error(404, "RepoNotFound")
            files, deleted = {}, []
            for line in body.decode().splitlines():
                item = json.loads(line) if line.strip() else {}
                if item.get("key") == "file":
                    files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                elif item.get("key") == "deletedFile":
                    deleted.append(item["value"]["path"])
                elif item.get("key") == "deletedFolder":
                    prefix = item["value"]["path"].rstrip("/") + "/"
                    deleted += [p for p in hub.repos[repo_id].head[1] if fnmatch.fnmatch(p, prefix + "*")]
            sha = hub.commit(repo_id, files, tuple(deleted))
            self._json({"commitUrl": f"{hub.url}/{repo_id}/commit/{sha}", "commitOid": sha})

    return Handler


@contextlib.contextmanager
def running_hub(cache: Path) -> Iterator[FakeHub]:
    """A started FakeHub with fp-registry and huggingface_hub pointed at it and a private cache."""
    from huggingface_hub import constants

    with FakeHub() as hub, pytest.MonkeyPatch.context() as mp:
        mp.setattr(constants, "HF_HUB_CACHE", str(cache))
        mp.setattr(constants, "HF_HUB_DISABLE_XET", True)
        mp.setenv("HF_HUB_CACHE", str(cache))  # for worker processes (Ray), which read it at import
        mp.setenv("HF_HUB_DISABLE_XET", "1")
        mp.setenv("FP_REGISTRY_HF_ENDPOINT", hub.url)
        mp.setenv("HF_TOKEN", "test-token")
        yield hub


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[FakeHub]:
    with running_hub(tmp_path / "hf-cache") as h:
        yield h
