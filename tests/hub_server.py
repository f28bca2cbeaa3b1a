"""A Hugging Face Hub-compatible server for tests, on loopback, speaking the protocol the
pinned huggingface_hub (2.4, with HF_HUB_DISABLE_XET=1) uses to create, upload and download.

It keeps real commits (so branches and pinned revisions work), stores LFS objects by
sha256, checks tokens, and can inject faults: an HTTP status or a dropped connection on
the next request whose method and path match, or a download that lies about its size
(``HubState.oversize``: the listing and HEAD announce the real size, the GET body goes on).

Endpoints: POST /api/repos/create; POST /api/models/{repo}/preupload/{rev};
POST /{repo}.git/info/lfs/objects/batch, then PUT /lfs-upload/{oid};
POST /api/models/{repo}/commit/{rev} (NDJSON); POST /api/models/{repo}/branch/{branch};
GET /api/models/{repo}[/revision/{rev}]; GET /api/models/{repo}/tree/{rev}[/{path}];
GET /api/models/{repo}/commits/{rev}; HEAD/GET /{repo}/resolve/{rev}/{path};
POST /api/validate-yaml; GET /api/whoami-v2.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

import yaml

LFS_THRESHOLD = 10 * 1024  # binary or bigger files go through LFS, as on the Hub


@dataclass
class Blob:
    data: bytes
    lfs: bool

    @property
    def git_oid(self) -> str:
        if self.lfs:  # git stores the pointer file
            return hashlib.sha1(self.pointer).hexdigest()
        return hashlib.sha1(b"blob %d\0" % len(self.data) + self.data).hexdigest()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def pointer(self) -> bytes:
        text = f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {len(self.data)}\n"
        return b"blob %d\0" % len(text) + text.encode()


@dataclass
class Commit:
    oid: str
    parent: str | None
    message: str
    files: dict[str, Blob]
    date: float = field(default_factory=time.time)


@dataclass
class Repo:
    owner: str
    name: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        revision = unquote(revision)
        if revision in self.branches:
            return self.commits[self.branches[revision]]
        return self.commits.get(revision)


@dataclass
class Fault:
    method: str
    path_pattern: str
    status: int | None = None  # None: drop the connection without answering
    times: int = 1


class HubState:
    def __init__(self, tokens: dict[str, tuple[str, str]]) -> None:
        self.tokens = tokens  # token -> (user, "read" | "write")
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.faults: list[Fault] = []
        self.log: list[str] = []  # "METHOD path" of every request, for assertions
        self.headers_seen: list[str] = []
        self.oversize: dict[str, int] = {}  # file path in a repo -> bytes a GET sends past its real end
        self.sent: dict[str, int] = {}  # file path -> body bytes the last GET of it got out
        self.lock = threading.Lock()

    def inject(self, method: str, path_pattern: str, status: int | None = None, times: int = 1) -> None:
        self.faults.append(Fault(method, path_pattern, status, times))

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.method == method and re.search(fault.path_pattern, path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None


class HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: HubState

    def log_message(self, *args: object) -> None:
        pass

    # -- plumbing ---------------------------------------------------------------------

    def _route(self, method: str) -> None:
        path = urlparse(self.path).path
        self.state.log.append(f"{method} {path}")
        self.state.headers_seen.append("\n".join(f"{k}: {v}" for k, v in self.headers.items()))
        fault = self.state.take_fault(method, path)
        if fault is not None:
            if fault.status is None:  # a dropped connection
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self._body()  # drain the request so the kept-alive connection stays in step
            return self._error(fault.status, "InjectedFault", "injected failure")
        for pattern, handler in self.ROUTES.get(method, []):
            match = re.fullmatch(pattern, path)
            if match:
                return handler(self, *[unquote(g) for g in match.groups()])
        self._error(404, None, f"no route for {method} {path}")

    def do_GET(self) -> None:
        self._route("GET")

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data: object, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), headers)

    def _error(self, status: int, code: str | None, message: str) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, json.dumps({"error": message}).encode(), headers)

    def _user(self) -> tuple[str, str] | None:
        header = self.headers.get("Authorization", "")
        return self.state.tokens.get(header[7:]) if header.startswith("Bearer ") else None

    def _readable(self, repo_id: str) -> Repo | None:
        """The repo if this request may read it; else answers like the Hub and returns None."""
        repo = self.state.repos.get(repo_id)
        user = self._user()
        if self.headers.get("Authorization") and user is None:
            self._error(401, None, "Invalid credentials in Authorization header")
            return None
        if repo is None or (repo.private and (user is None or user[0] != repo.owner)):
            self._error(401 if user is None else 404, "RepoNotFound", "Repository not found")
            return None
        return repo

    def _writable(self, repo_id: str) -> Repo | None:
        user = self._user()
        if user is None:
            self._error(401, None, "Invalid credentials in Authorization header")
            return None
        repo = self.state.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", "Repository not found")
            return None
        if user[0] != repo.owner or user[1] != "write":
            self._error(403, None, "You don't have the rights to write to this repository")
            return None
        return repo

    def _readable_commit(self, repo_id: str, revision: str) -> tuple[Repo, Commit] | None:
        """The repo and the commit ``revision`` names, if readable; else answers the error."""
        repo = self._readable(repo_id)
        commit = self._commit_of(repo, revision) if repo is not None else None
        return (repo, commit) if commit is not None else None

    def _commit_of(self, repo: Repo, revision: str) -> Commit | None:
        commit = repo.resolve(revision)
        if commit is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return commit

    # -- API ----------------------------------------------------------------------------

    def whoami(self) -> None:
        user = self._user()
        if user is None:
            return self._error(401, None, "Invalid credentials in Authorization header")
        self._json({"type": "user", "name": user[0], "fullname": user[0].title(), "avatarUrl": "",
                    "auth": {"accessToken": {"role": user[1]}}})

    def create_repo(self) -> None:
        payload = json.loads(self._body())
        user = self._user()
        if user is None:
            return self._error(401, None, "Invalid credentials in Authorization header")
        owner = payload.get("organization") or user[0]
        if owner != user[0] or user[1] != "write":
            return self._error(403, None, "You don't have the rights to create a model under this namespace")
        repo_id = f"{owner}/{payload['name']}"
        if repo_id in self.state.repos:  # the Hub's 409 carries the repo URL, which the client reads
            return self._json({"error": "You already created this model repo",
                               "url": f"http://{self.headers['Host']}/{repo_id}"}, status=409)
        repo = Repo(owner, payload["name"], payload.get("private") or payload.get("visibility") == "private")
        initial = Commit(hashlib.sha1(f"{repo_id}{time.time()}".encode()).hexdigest(), None, "initial commit",
                         {".gitattributes": Blob(b"*.h5 filter=lfs diff=lfs merge=lfs -text\n", False)})
        repo.commits[initial.oid] = initial
        repo.branches["main"] = initial.oid
        self.state.repos[repo_id] = repo
        self._json({"url": f"http://{self.headers['Host']}/{repo_id}", "name": repo_id})

    def repo_info(self, repo_id: str, revision: str = "main") -> None:
        found = self._readable_commit(repo_id, revision)
        if found is None:
            return
        repo, commit = found
        self._json({"id": repo_id, "modelId": repo_id, "author": repo.owner, "sha": commit.oid,
                    "private": repo.private, "disabled": False, "gated": False, "tags": [],
                    "lastModified": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(commit.date)),
                    "siblings": [{"rfilename": path} for path in sorted(commit.files)]})

    def tree(self, repo_id: str, revision: str, prefix: str = "") -> None:
        found = self._readable_commit(repo_id, revision)
        if found is None:
            return
        repo, commit = found
        recursive = parse_qs(urlparse(self.path).query).get("recursive", ["false"])[0] in ("true", "True", "1")
        prefix = prefix.strip("/")
        entries, folders = [], set()
        for path, blob in sorted(commit.files.items()):
            if prefix and not path.startswith(prefix + "/"):
                continue
            rest = path[len(prefix) + 1:] if prefix else path
            if "/" in rest and not recursive:
                folders.add((prefix + "/" if prefix else "") + rest.split("/")[0])
                continue
            for i in range(1, rest.count("/") + 1):
                folders.add((prefix + "/" if prefix else "") + "/".join(rest.split("/")[:i]))
            entry = {"type": "file", "oid": blob.git_oid, "size": len(blob.data), "path": path}
            if blob.lfs:
                entry["lfs"] = {"oid": blob.sha256, "size": len(blob.data), "pointerSize": len(blob.pointer)}
            entries.append(entry)
        entries += [{"type": "directory", "oid": hashlib.sha1(f.encode()).hexdigest(), "size": 0, "path": f}
                    for f in sorted(folders)]
        self._json(entries)

    def commits(self, repo_id: str, revision: str) -> None:
        found = self._readable_commit(repo_id, revision)
        if found is None:
            return
        repo, commit = found
        history = []
        while commit is not None:
            history.append({"id": commit.oid, "title": commit.message, "message": commit.message,
                            "authors": [{"user": repo.owner}],
                            "date": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(commit.date))})
            commit = repo.commits.get(commit.parent) if commit.parent else None
        self._json(history)

    def resolve(self, repo_id: str, revision: str, path: str) -> None:
        found = self._readable_commit(repo_id, revision)
        if found is None:
            return
        repo, commit = found
        blob = commit.files.get(path)
        if blob is None:
            return self._error(404, "EntryNotFound", f"{path} does not exist on {revision}")
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{blob.git_oid}"', "Accept-Ranges": "bytes"}
        if blob.lfs:
            headers |= {"X-Linked-Etag": f'"{blob.sha256}"', "X-Linked-Size": str(len(blob.data))}
        if self.command == "GET" and path in self.state.oversize:
            return self._stream_past_the_end(path, blob.data, self.state.oversize[path], headers)
        self._send(200, blob.data, headers, content_type="application/octet-stream")

    def _stream_past_the_end(self, path: str, data: bytes, extra: int, headers: dict[str, str]) -> None:
        """Send ``data`` then ``extra`` zero bytes, with no Content-Length (the body ends when the
        connection closes), counting in ``state.sent`` what got out before the client hung up."""
        self.send_response(200)
        for key, value in {**headers, "Content-Type": "application/octet-stream", "Connection": "close"}.items():
            self.send_header(key, value)
        self.end_headers()
        self.close_connection = True
        self.state.sent[path] = 0
        zeros = bytes(64 * 1024)
        pieces = [data] + [zeros] * (extra // len(zeros)) + [zeros[:extra % len(zeros)]]
        try:
            for piece in pieces:
                self.wfile.write(piece)
                self.state.sent[path] += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def preupload(self, repo_id: str, revision: str) -> None:
        repo = self._writable(repo_id)
        if repo is None or self._commit_of(repo, revision) is None:
            return
        files = json.loads(self._body())["files"]
        answer = []
        for item in files:
            sample = base64.b64decode(item.get("sample", ""))
            lfs = item["size"] > LFS_THRESHOLD or b"\0" in sample
            answer.append({"path": item["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False})
        self._json({"files": answer, "commitOid": repo.resolve(revision).oid})

    def lfs_batch(self, repo_id: str) -> None:
        repo = self._writable(repo_id)
        if repo is None:
            return
        payload = json.loads(self._body())
        host = self.headers["Host"]
        objects = []
        for item in payload["objects"]:
            entry = {"oid": item["oid"], "size": item["size"]}
            if item["oid"] not in self.state.lfs:
                entry["actions"] = {"upload": {"href": f"http://{host}/lfs-upload/{item['oid']}"}}
            objects.append(entry)
        self._json({"transfer": "basic", "objects": objects})

    def lfs_upload(self, oid: str) -> None:
        data = self._body()
        if hashlib.sha256(data).hexdigest() != oid:
            return self._error(400, None, "sha256 does not match the object id")
        self.state.lfs[oid] = data
        self._send(200, b"")

    def commit(self, repo_id: str, revision: str) -> None:
        repo = self._writable(repo_id)
        if repo is None:
            return
        parent = self._commit_of(repo, revision)
        if parent is None:
            return
        lines = [json.loads(line) for line in self._body().decode().splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        files = dict(parent.files)
        for line in lines:
            value = line["value"]
            if line["key"] == "file":
                files[value["path"]] = Blob(base64.b64decode(value["content"]), False)
            elif line["key"] == "lfsFile":
                if value["oid"] not in self.state.lfs:
                    return self._error(422, None, f"LFS object {value['oid']} was never uploaded")
                files[value["path"]] = Blob(self.state.lfs[value["oid"]], True)
            elif line["key"] == "deletedFile":
                files.pop(value["path"], None)
        oid = hashlib.sha1(json.dumps([parent.oid, header, sorted(files)]).encode() + str(time.time()).encode())
        new = Commit(oid.hexdigest(), parent.oid, header.get("summary", ""), files)
        repo.commits[new.oid] = new
        repo.branches[unquote(revision)] = new.oid
        host = self.headers["Host"]
        self._json({"commitUrl": f"http://{host}/{repo_id}/commit/{new.oid}", "commitOid": new.oid,
                    "success": True})

    def create_branch(self, repo_id: str, branch: str) -> None:
        repo = self._writable(repo_id)
        if repo is None:
            return
        body = self._body()
        start = json.loads(body).get("startingPoint") if body else None
        if branch in repo.branches:
            return self._error(409, None, "Reference already exists")
        source = repo.resolve(start or "main")
        repo.branches[branch] = source.oid
        self._json({})

    def validate_yaml(self) -> None:
        content = json.loads(self._body())["content"]
        errors = []
        match = re.match(r"^---\n(.*?)\n---", content, re.S)
        if match:
            try:
                meta = yaml.safe_load(match.group(1)) or {}
            except yaml.YAMLError as error:
                errors.append({"message": f"YAML parse error: {error}"})
            else:
                for key, kind in (("tags", list), ("library_name", str), ("pipeline_tag", str)):
                    if key in meta and not isinstance(meta[key], kind):
                        errors.append({"message": f'"{key}" must be a {kind.__name__}'})
                for index in meta.get("model-index", []) or []:
                    for result in index.get("results", []):
                        for metric in result.get("metrics", []):
                            if not isinstance(metric.get("value"), (int, float)):
                                errors.append({"message": "model-index metric values must be numbers"})
        self._json({"errors": errors, "warnings": []}, status=400 if errors else 200)

    REPO = r"([^/]+/[^/]+)"
    ROUTES = {
        "GET": [
            (r"/api/whoami-v2", whoami),
            (rf"/api/models/{REPO}", repo_info),
            (rf"/api/models/{REPO}/revision/([^/]+)", repo_info),
            (rf"/api/models/{REPO}/tree/([^/]+)", tree),
            (rf"/api/models/{REPO}/tree/([^/]+)/(.+)", tree),
            (rf"/api/models/{REPO}/commits/([^/]+)", commits),
            (rf"/{REPO}/resolve/([^/]+)/(.+)", resolve),
        ],
        "HEAD": [(rf"/{REPO}/resolve/([^/]+)/(.+)", resolve)],
        "POST": [
            (r"/api/repos/create", create_repo),
            (r"/api/validate-yaml", validate_yaml),
            (rf"/api/models/{REPO}/preupload/([^/]+)", preupload),
            (rf"/api/models/{REPO}/commit/([^/]+)", commit),
            (rf"/api/models/{REPO}/branch/([^/]+)", create_branch),
            (rf"/{REPO}\.git/info/lfs/objects/batch", lfs_batch),
        ],
        "PUT": [(r"/lfs-upload/([0-9a-f]{64})", lfs_upload)],
    }


class HubServer:
    """Start with ``with HubServer(tokens) as hub:``; ``hub.url``, ``hub.state``."""

    def __init__(self, tokens: dict[str, tuple[str, str]]) -> None:
        self.state = HubState(tokens)
        handler = type("Handler", (HubHandler,), {"state": self.state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "HubServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
