"""A local stand-in for the Hugging Face Hub, and clampgen run against it in a subprocess (for
tests/test_hub.py).

    hub = FakeHub({"org/repo": {"open_clip_pytorch_model.bin": data}}).start()
    hub.url, hub.requests   # the endpoint for HF_ENDPOINT; [(method, path), ...] it was asked
    hub.stop()

It speaks the part of the Hub's protocol hf_hub_download uses: HEAD and GET of
`/{repo_id}/resolve/{revision}/{filename}` answer with X-Repo-Commit, ETag (the sha256 of the
file, as for LFS files) and Content-Length; a missing file is 404 with X-Error-Code
EntryNotFound (RepoNotFound for an unknown repository). Like the Hub, it answers small files
(open_clip_config.json) itself, with their git blob id as ETag, and redirects the weights (LFS
files) to another host, a second server standing in for the CDN, with X-Linked-Etag and
X-Linked-Size on the redirect. It also works as an HTTP proxy (requests in absolute form) for
any host name.

    python tests/fake_hub.py cli ARGS...        # clampgen's generate.py with ARGS
    python tests/fake_hub.py resolve DEVICE...  # prints resolve_model('auto', '', DEVICE) as JSON
                                                # and, after each, GETs $FAKE_HUB_MARK/mark/DEVICE
    python tests/fake_hub.py load MODEL         # prints what load_clip(MODEL) loaded, as JSON

huggingface_hub reads HF_ENDPOINT, HF_HUB_OFFLINE and HF_HOME when it is imported, so the app
runs in a subprocess with its environment set. Both commands first register the open_clip tag
`clampgen-tiny/fakehub` (weights in REPO on the Hub) and make it what `--model auto` prefers.
"""

import hashlib
import json
import os
import re
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

REPO = "clampgen-test/tiny-clip"
TAG = "fakehub"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
LFS = (".bin", ".safetensors", ".pt", ".pth", ".ckpt")  # stored with git LFS: the CDN serves them
RESOLVE = re.compile(r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<filename>.+)")


class _Handler(BaseHTTPRequestHandler):
    def do_HEAD(self):
        self._answer(body=False)

    def do_GET(self):
        self._answer(body=True)

    def _answer(self, body: bool):
        hub = self.server.hub
        hub.requests.append((self.command, self.path))
        path = urlsplit(self.path).path  # a proxy gets absolute URLs
        resolve = RESOLVE.fullmatch(path)
        if path.startswith("/mark/"):
            return self._send(200, b"", body, {})
        if path.startswith("/cdn/") and path[5:] in hub.blobs:
            return self._send(200, hub.blobs[path[5:]], body, {})
        if not resolve or resolve["repo"] not in hub.repos:
            return self._send(404, b"", body, {"X-Error-Code": "RepoNotFound"})
        data = hub.repos[resolve["repo"]].get(resolve["filename"])
        commit = {"X-Repo-Commit": COMMIT}
        if data is None:
            return self._send(404, b"", body, {"X-Error-Code": "EntryNotFound", **commit})
        if not resolve["filename"].endswith(LFS):  # a small file: served here, git's blob id
            blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
            return self._send(200, data, body, {**commit, "ETag": f'"{blob}"'})
        sha = hashlib.sha256(data).hexdigest()
        linked = {"X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data))}
        location = {"Location": f"{hub.cdn_url}/cdn/{sha}"}
        self._send(302, b"", body, {**commit, **linked, **location, "ETag": '"git-sha1"'})

    def _send(self, status: int, data: bytes, body: bool, headers: dict):
        self.send_response(status)
        if status == 200:
            headers = {"ETag": f'"{hashlib.sha256(data).hexdigest()}"', **headers}
        for key, value in {**headers, "Content-Length": str(len(data))}.items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, *args):  # quiet
        pass


class FakeHub:
    """Two local HTTP servers: the Hub (self.url) and its CDN; every request in self.requests."""

    def __init__(self, repos: dict):
        self.repos = repos  # {repo_id: {filename: bytes}}
        self.blobs = {
            hashlib.sha256(data).hexdigest(): data
            for files in repos.values()
            for data in files.values()
        }
        self.requests = []
        self._servers = []

    def start(self):
        for _ in range(2):
            server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
            server.hub = self
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self._servers.append(server)
        self.url, self.cdn_url = (f"http://127.0.0.1:{s.server_address[1]}" for s in self._servers)
        return self

    def stop(self):
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers = []

    def resolved(self) -> list:
        """(method, filename) of the requests for files of any repo, in order."""
        paths = ((m, RESOLVE.fullmatch(urlsplit(p).path)) for m, p in self.requests)
        return [(m, r["filename"]) for m, r in paths if r]


def register_fake_tag():
    """Makes clampgen-tiny/fakehub an open_clip tag whose weights are REPO's default file, and
    the model `--model auto` prefers."""
    import open_clip
    from open_clip.pretrained import _PRETRAINED  # open_clip has no public way to add a tag

    from clampgen import clip_loader

    clip_loader.register_tiny_model()
    _PRETRAINED.setdefault(clip_loader.TINY_MODEL, {})[TAG] = {
        "hf_hub": f"{REPO}/",
        "mean": open_clip.OPENAI_DATASET_MEAN,
        "std": open_clip.OPENAI_DATASET_STD,
    }
    clip_loader.AUTO_MODEL = (clip_loader.TINY_MODEL, TAG)


def main(argv: list) -> int:
    register_fake_tag()
    if argv[0] == "cli":
        from clampgen.cli import main as cli_main

        return cli_main(argv[1:])
    from clampgen.clip_loader import load_clip, resolve_model

    if argv[0] == "load":
        bundle = load_clip(argv[1])
        state = bundle.model.state_dict()
        print(
            json.dumps(
                {
                    "name": bundle.name,
                    "input_size": list(bundle.input_size),
                    "mean": bundle.mean.flatten().tolist(),
                    "std": bundle.std.flatten().tolist(),
                    "logit_scale": state["logit_scale"].item(),
                }
            )
        )
        return 0
    for device in argv[1:]:
        print(json.dumps(resolve_model("auto", "", device)), flush=True)
        mark = os.environ.get("FAKE_HUB_MARK")  # the hub's log shows which requests came before
        if mark:
            urllib.request.urlopen(f"{mark}/mark/{device}").close()
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main(sys.argv[1:]))
