"""A local stand-in for the parts of the Hugging Face Hub HTTP API that huggingface_hub 2.4 and transformers 5.x use
to publish and load a model repository. Tests point `HfApi(endpoint=...)` / `HF_ENDPOINT` at it; no network.

Implemented (model repos, branch `main` plus commit hashes):
    POST /api/repos/create                            409 when the repo exists
    GET  /api/whoami-v2
    GET  /api/agent-harnesses                           the client's user-agent registry: answered empty
    POST /api/validate-yaml                             README.md metadata: YAML, and model-index's required keys
    GET  /api/models/{repo}[/revision/{rev}]           model_info (siblings with blobId / size)
    GET  /api/models/{repo}/tree/{rev}[/{path}]         list_repo_tree / list_repo_files
    POST /api/models/{repo}/preupload/{rev}             *.safetensors go through LFS (as .gitattributes says), the
                                                        rest inline ("regular", base64 in the commit)
    POST /{repo}.git/info/lfs/objects/batch             LFS batch API, "basic" transfer: one PUT per object
    PUT  /lfs-objects/{sha256}                          the upload URL the batch answer hands out
    POST /api/models/{repo}/commit/{rev}                ndjson: header, file, lfsFile, deletedFile, deletedFolder
    HEAD/GET /{repo}/resolve/{rev}/{path}               downloads, with X-Repo-Commit and ETag (X-Linked-Etag = sha256
                                                        for LFS files) headers, served directly (no CDN redirect)
Not implemented: Xet storage (tests set HF_HUB_DISABLE_XET so huggingface_hub uses the LFS protocol; the Xet CAS
protocol of hf_xet is not emulated), multipart LFS uploads, pull requests, branches other than main. Any other
request gets a 404 and is recorded in `unhandled`.

Auth: writes need a known token (`Authorization: Bearer`); a private repo is invisible (401 RepoNotFound, as the
Hub answers) without its owner's token.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml


LFS_SUFFIX = ".safetensors"


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    """The git-lfs pointer file git stores in place of an LFS file (what the Hub's blobId hashes)."""
    return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(data).hexdigest()}\n"
            f"size {len(data)}\n").encode()


def _content_oid(name: str, data: bytes) -> str:
    """What preupload reports for an existing file (the client skips re-uploading when it matches): the sha256 of an
    LFS file, the git blob sha1 of a regular one."""
    return hashlib.sha256(data).hexdigest() if name.endswith(LFS_SUFFIX) else git_blob_sha1(data)


def sibling(name: str, data: bytes) -> dict:
    """A file as model_info / list_repo_tree describe it (blob id of the pointer + lfs info for LFS files)."""
    if not name.endswith(LFS_SUFFIX):
        return {"blobId": git_blob_sha1(data), "size": len(data)}
    pointer = lfs_pointer(data)
    return {"blobId": git_blob_sha1(pointer), "size": len(data),
            "lfs": {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": len(pointer)}}


@dataclass
class Repo:
    owner: str
    private: bool
    commits: list[tuple[str, dict[str, bytes]]] = field(default_factory=list)  # (sha, files), oldest first

    def files(self, revision: str = "main") -> dict[str, bytes] | None:
        if revision == "main":
            return self.commits[-1][1]
        return next((files for sha, files in self.commits if sha == revision), None)

    def sha(self, revision: str = "main") -> str:
        return self.commits[-1][0] if revision == "main" else revision


class HubStandIn:
    """`with HubStandIn(tokens={"hf_alice": "alice"}) as hub:` serves on `hub.url` in a background thread."""

    def __init__(self, tokens: dict[str, str]):
        self.tokens = tokens
        self.repos: dict[str, Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}  # sha256 -> content
        self.requests: list[tuple[str, str]] = []
        self.unhandled: list[tuple[str, str]] = []
        self.create_calls = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "HubStandIn":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def user(self, headers) -> str | None:
        auth = headers.get("Authorization", "")
        return self.tokens.get(auth.removeprefix("Bearer ").strip()) if auth.startswith("Bearer ") else None

    def commit(self, repo: Repo, files: dict[str, bytes]) -> str:
        sha = hashlib.sha1(f"{len(repo.commits)}:{sorted((k, git_blob_sha1(v)) for k, v in files.items())}".encode()
                           ).hexdigest()
        repo.commits.append((sha, files))
        return sha


def _model_index_errors(model_index) -> list[str]:
    """The keys the Hub requires of model-index results (a subset of its schema)."""
    if model_index is None:
        return []
    errors = []
    for entry in model_index if isinstance(model_index, list) else [None]:
        if not isinstance(entry, dict) or "name" not in entry or not isinstance(entry.get("results"), list):
            errors.append("model-index entries need a name and a list of results")
            continue
        for result in entry["results"]:
            if not result.get("task", {}).get("type"):
                errors.append("model-index result without task.type")
            if not {"name", "type"} <= set(result.get("dataset", {})):
                errors.append("model-index dataset needs name and type")
            for metric in result.get("metrics", []) or [None]:
                if not isinstance(metric, dict) or "type" not in metric or not isinstance(metric.get("value"),
                                                                                             (int, float)):
                    errors.append("model-index metrics need a type and a numeric value")
    return errors


REPO = r"(?P<repo>[\w.-]+/[\w.-]+)"
REV = r"(?P<rev>[^/]+)"


def _handler_for(hub: HubStandIn):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep pytest output clean
            pass

        # ---- plumbing -------------------------------------------------------------------------------------
        def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type="application/json"):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, payload, headers: dict | None = None):
            self._send(status, json.dumps(payload).encode(), headers)

        def _error(self, status: int, message: str, code: str | None = None):
            self._json(status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message} if code
                       else {"X-Error-Message": message})

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _visible_repo(self, repo_id: str) -> Repo | None:
            repo = hub.repos.get(repo_id)
            if repo is None or (repo.private and hub.user(self.headers) != repo.owner):
                self._error(401, "Repository not found", "RepoNotFound")
                return None
            return repo

        def _snapshot(self, repo_id: str, rev: str) -> tuple[Repo | None, dict[str, bytes] | None]:
            """The repo and its files at `rev`; (…, None) after answering with the error."""
            repo = self._visible_repo(repo_id)
            files = repo.files(rev) if repo is not None else None
            if repo is not None and files is None:
                self._error(404, f"Invalid rev id: {rev}", "RevisionNotFound")
            return repo, files

        def _writable_repo(self, repo_id: str) -> Repo | None:
            user = hub.user(self.headers)
            if user is None:
                self._error(401, "Invalid credentials in Authorization header")
                return None
            repo = self._visible_repo(repo_id)
            if repo is not None and repo.owner != user:
                self._error(403, f"You don't have the rights to write to {repo_id}")
                return None
            return repo

        def _dispatch(self, routes):
            url = urlsplit(self.path)
            path, query = unquote(url.path), parse_qs(url.query)
            hub.requests.append((self.command, self.path))
            with hub._lock:
                for method, pattern, action in routes:
                    match = re.fullmatch(pattern, path)
                    if method == self.command and match:
                        return action(self, query, **match.groupdict())
                hub.unhandled.append((self.command, self.path))
                self._error(404, f"stand-in does not implement {self.command} {path}")

        def do_GET(self):
            self._dispatch(ROUTES)

        do_HEAD = do_POST = do_PUT = do_GET

        # ---- endpoints ------------------------------------------------------------------------------------
        def create_repo(self, query):
            user = hub.user(self.headers)
            payload = json.loads(self._body())
            hub.create_calls += 1
            if user is None:
                return self._error(401, "Invalid credentials in Authorization header")
            namespace = payload.get("organization") or user
            if namespace != user:
                return self._error(403, f"You don't have the rights to create a repo under {namespace}")
            repo_id = f"{namespace}/{payload['name']}"
            if repo_id in hub.repos:
                return self._json(409, {"error": "You already created this model repo", "url": f"{hub.url}/{repo_id}"})
            repo = Repo(owner=user, private=payload.get("visibility", "public") == "private")
            hub.commit(repo, {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"})
            hub.repos[repo_id] = repo
            self._json(200, {"url": f"{hub.url}/{repo_id}", "name": repo_id})

        def whoami(self, query):
            user = hub.user(self.headers)
            if user is None:
                return self._error(401, "Invalid credentials in Authorization header")
            self._json(200, {"type": "user", "name": user, "orgs": [], "auth": {"type": "access_token"}})

        def validate_yaml(self, query):
            content = json.loads(self._body())["content"]
            errors = []
            if content.startswith("---\n"):
                try:
                    metadata = yaml.safe_load(content.split("\n---\n", 1)[0][4:]) or {}
                except yaml.YAMLError as exc:
                    metadata, errors = {}, [f"invalid YAML: {exc}"]
                errors += _model_index_errors(metadata.get("model-index")) if isinstance(metadata, dict) else \
                    ["metadata must be a mapping"]
            if errors:
                return self._json(400, {"errors": [{"message": e} for e in errors]}, {"X-Error-Message": errors[0]})
            self._json(200, {"errors": [], "warnings": []})

        def agent_harnesses(self, query):
            self._json(200, {"standardEnvVars": [], "harnesses": {}})

        def model_info(self, query, repo, rev="main"):
            found, files = self._snapshot(repo, rev)
            if files is None:
                return
            siblings = [{"rfilename": name, **sibling(name, data)} for name, data in sorted(files.items())]
            self._json(200, {"_id": repo, "id": repo, "modelId": repo, "author": found.owner, "sha": found.sha(rev),
                             "private": found.private, "disabled": False, "gated": False, "downloads": 0, "likes": 0,
                             "tags": [], "siblings": siblings, "lastModified": "2026-01-01T00:00:00.000Z"})

        def tree(self, query, repo, rev, subpath=None):
            found, files = self._snapshot(repo, rev)
            if files is None:
                return
            subpath = (subpath or "").strip("/")
            prefix = f"{subpath}/" if subpath else ""
            entries = []
            for name, data in sorted(files.items()):
                if name.startswith(prefix):
                    info = sibling(name, data)
                    lfs = info.get("lfs")
                    entries.append({"type": "file", "path": name, "oid": info["blobId"], "size": len(data),
                                    **({"lfs": {"oid": lfs["sha256"], "size": lfs["size"],
                                                "pointerSize": lfs["pointerSize"]}} if lfs else {})})
            self._json(200, entries)

        def preupload(self, query, repo, rev):
            found = self._writable_repo(repo)
            if found is None:
                return
            current = found.files(rev) or {}
            files = json.loads(self._body())["files"]
            self._json(200, {"files": [{"path": f["path"], "shouldIgnore": False,
                                        "uploadMode": "lfs" if f["path"].endswith(LFS_SUFFIX) else "regular",
                                        "oid": _content_oid(f["path"], current[f["path"]])
                                        if f["path"] in current else None} for f in files]})

        def lfs_batch(self, query, repo):
            if self._writable_repo(repo) is None:
                return
            request = json.loads(self._body())
            if request.get("operation") != "upload" or "basic" not in request.get("transfers", ["basic"]):
                return self._error(400, "the stand-in supports LFS uploads with the basic transfer only")
            objects = []
            for obj in request["objects"]:
                actions = {} if obj["oid"] in hub.lfs_objects else {
                    "upload": {"href": f"{hub.url}/lfs-objects/{obj['oid']}", "header": {}}}
                objects.append({"oid": obj["oid"], "size": obj["size"], "authenticated": True,
                                **({"actions": actions} if actions else {})})
            self._json(200, {"transfer": "basic", "objects": objects})

        def lfs_put(self, query, oid):
            data = self._body()
            if hashlib.sha256(data).hexdigest() != oid:
                return self._error(400, "LFS object content does not match its sha256")
            hub.lfs_objects[oid] = data
            self._send(200)

        def commit(self, query, repo, rev):
            found = self._writable_repo(repo)
            if found is None:
                return
            if rev != "main":
                return self._error(400, "the stand-in commits to main only")
            files = dict(found.files())
            for line in self._body().splitlines():
                item = json.loads(line)
                key, value = item["key"], item["value"]
                if key == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif key == "lfsFile":
                    if value["oid"] not in hub.lfs_objects:
                        return self._error(400, f"LFS object {value['oid']} of {value['path']} was never uploaded")
                    files[value["path"]] = hub.lfs_objects[value["oid"]]
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key == "deletedFolder":
                    files = {k: v for k, v in files.items() if not k.startswith(value["path"].rstrip("/") + "/")}
                elif key != "header":
                    return self._error(400, f"the stand-in does not accept {key!r} operations")
            sha = hub.commit(found, files)
            self._json(200, {"commitUrl": f"{hub.url}/{repo}/commit/{sha}", "commitOid": sha, "pullRequestUrl": None})

        def resolve(self, query, repo, rev, filename):
            found, files = self._snapshot(repo, rev)
            if files is None:
                return
            if filename not in files:
                return self._error(404, f"Entry not found: {filename}", "EntryNotFound")
            data = files[filename]
            info = sibling(filename, data)
            headers = {"X-Repo-Commit": found.sha(rev), "ETag": f'"{info["blobId"]}"'}
            if "lfs" in info:
                headers.update({"X-Linked-Etag": f'"{info["lfs"]["sha256"]}"', "X-Linked-Size": str(len(data))})
            self._send(200, data, headers, content_type="application/octet-stream")

    ROUTES = [
        ("POST", r"/api/repos/create", Handler.create_repo),
        ("GET", r"/api/whoami-v2", Handler.whoami),
        ("POST", r"/api/validate-yaml", Handler.validate_yaml),
        ("GET", r"/api/agent-harnesses", Handler.agent_harnesses),
        ("GET", rf"/api/models/{REPO}", Handler.model_info),
        ("GET", rf"/api/models/{REPO}/revision/{REV}", Handler.model_info),
        ("GET", rf"/api/models/{REPO}/tree/{REV}(?P<subpath>/.*)?", Handler.tree),
        ("POST", rf"/api/models/{REPO}/preupload/{REV}", Handler.preupload),
        ("POST", rf"/api/models/{REPO}/commit/{REV}", Handler.commit),
        ("POST", rf"/{REPO}\.git/info/lfs/objects/batch", Handler.lfs_batch),
        ("PUT", r"/lfs-objects/(?P<oid>[0-9a-f]{64})", Handler.lfs_put),
        ("GET", rf"/{REPO}/resolve/{REV}/(?P<filename>.+)", Handler.resolve),
        ("HEAD", rf"/{REPO}/resolve/{REV}/(?P<filename>.+)", Handler.resolve),
    ]
    return Handler
