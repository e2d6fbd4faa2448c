"""Secrets set in the environment never land in run folders, logs, W&B files or a sandboxed program's view.

Every key a user typically exports is set to a unique canary. Then the whole flow runs through its
real entry points: an hf eval on the tiny model, an openai-backend eval against a local server
(the only place its key may go is that server's Authorization header), a short SFT run with W&B
offline and inline checkpoint evals, a report logged to W&B offline, and a sandboxed program that
looks for the keys everywhere it can read. Then the bytes of every file written, and every line
printed, are searched for each canary.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sustain.eval.tasks.arith import ArithTask
from test_faults_training import sft_recipe
from tests.conftest import ROOT, need_command

SECRET_VARS = ("WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY")
EVAL_FLAGS = ["--tasks", "arith", "--limit", "6", "--k-max", "1", "--max-new-tokens", "32", "--batch-size", "6"]


def canaries() -> dict[str, str]:
    # 40 characters (W&B's key length), unique per variable and per test run
    return {var: f"cnry{i}" + uuid.uuid4().hex[:35] for i, var in enumerate(SECRET_VARS)}


class ArithServer(ThreadingHTTPServer):
    """An OpenAI-compatible endpoint that solves arith items (it knows their gold answers).

    The model name can plant a fault: "http500" always answers HTTP 500; "garbage-after-N" answers
    N requests well, then with an HTML page.
    """

    daemon_threads = True

    def __init__(self, gold: dict[str, int]):
        super().__init__(("127.0.0.1", 0), ArithHandler)
        self.gold = gold
        self.auth: list[str | None] = []
        self.bodies: list[bytes] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class ArithHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.auth.append(self.headers.get("Authorization"))
        self.server.bodies.append(raw + json.dumps(dict(self.headers)).encode())
        request = json.loads(raw)
        model, prompt = request["model"], request["messages"][-1]["content"]
        if model == "http500":
            return self._send(500, b'{"error": "overloaded"}')
        if model.startswith("garbage-after-") and len(self.server.bodies) > int(model.rsplit("-", 1)[1]):
            return self._send(200, b"<html><body>502 Bad Gateway</body></html>")
        gold = next((g for question, g in self.server.gold.items() if prompt.startswith(question)), None)
        text = f"The sum works out. The answer is {gold}." if gold is not None else "I do not know."
        body = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                           "usage": {"completion_tokens": 9}}).encode()
        self._send(200, body)

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def run(cmd: list[str], env: dict, logs: Path, name: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, timeout=900)
    (logs / f"{name}.out").write_bytes(proc.stdout)  # kept and searched like every other file
    (logs / f"{name}.err").write_bytes(proc.stderr)
    assert proc.returncode == 0, proc.stderr[-3000:].decode(errors="replace")
    return proc


def files_holding(roots: list[Path], secrets: dict[str, str]) -> dict[str, list[str]]:
    """variable -> files (under any root) whose bytes contain its canary."""
    found: dict[str, list[str]] = {}
    for root in roots:
        for path in [root] if root.is_file() else root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                for var, value in secrets.items():
                    if value.encode() in data:
                        found.setdefault(var, []).append(str(path))
    return found


PEEK = textwrap.dedent("""\
    import json, os
    PREFIX = "cn" + "ry"  # split, so the program's own text never matches what it looks for
    def peek():
        seen, read = {}, {}
        def look(name, data):
            read[name] = len(data)
            text = data.decode("utf-8", "replace")
            for part in text.replace("\\0", "\\n").split("\\n"):
                if PREFIX in part:
                    seen[name] = part[:80]
        look("os.environ", "\\n".join(f"{k}={v}" for k, v in os.environ.items()).encode())
        sources = ["/proc/self/environ", "/proc/1/environ", f"/proc/{os.getppid()}/environ", "/proc/self/cmdline"]
        sources += [f"/proc/{p}/{f}" for p in os.listdir("/proc") if p.isdigit() for f in ("environ", "cmdline")]
        for path in sources:
            try:
                with open(path, "rb") as fh:
                    look(path, fh.read())
            except OSError as exc:
                read[path] = type(exc).__name__
        readable = [name for name, n in read.items() if isinstance(n, int)]
        print(json.dumps({"seen": seen, "tried": len(read), "readable": len(readable), "env_bytes": read["os.environ"]}))
        return not seen
    """)


@pytest.fixture(scope="module")
def secret_flow(tiny_model, tmp_path_factory):
    """Run everything once with canaries in the environment; return what to search."""
    need_command("bwrap", "bubblewrap")
    tmp = tmp_path_factory.mktemp("secrets")
    secrets = canaries()
    logs = tmp / "logs"
    logs.mkdir()
    (tmp / "wandb").mkdir()
    env = dict(os.environ, **secrets, WANDB_MODE="offline", WANDB_DIR=str(tmp / "wandb"), WANDB_PROJECT="secrets",
               WANDB_SILENT="true", TOKENIZERS_PARALLELISM="false")
    env.pop("SUSTAIN_KILL_AT_WRITE", None)
    py = [sys.executable, "-m"]

    run([*py, "sustain", "eval", "--model", str(tiny_model), "--out", str(tmp / "eval_hf"), *EVAL_FLAGS], env, logs, "eval_hf")

    items = ArithTask().load("test", 6)
    server = ArithServer({item.prompt: item.gold for item in items})
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        run([*py, "sustain", "eval", "--backend", "openai", "--model", "scripted", "--base-url", server.url,
             "--out", str(tmp / "eval_openai"), *EVAL_FLAGS], env, logs, "eval_openai")
    finally:
        server.shutdown()
        server.server_close()

    run([*py, "sustain", "train", "sft", "--config", str(sft_recipe(tmp)), "--model_name_or_path", str(tiny_model),
         "--output_dir", str(tmp / "train"), "--dataset_size", "32", "--per_device_train_batch_size", "8", "--max_steps", "2",
         "--save_steps", "2", "--logging_steps", "1", "--eval.limit", "6", "--eval.max_new_tokens", "32",
         "--eval.batch_size", "6", "--eval_mode", "inline", "--report_to", "wandb"], env, logs, "train")
    run([*py, "sustain", "report", str(tmp / "train"), str(tmp / "eval_hf"), "--out", str(tmp / "report"),
         "--wandb", "offline", "--wandb-project", "secrets"], dict(env, WANDB_DIR=str(tmp / "report_wandb")), logs, "report")

    from sustain.eval.sandbox import Program, Sandbox

    with pytest.MonkeyPatch.context() as mp:  # the evaluator that starts the sandbox holds the keys
        for var, value in secrets.items():
            mp.setenv(var, value)
        with Sandbox(workers=1, timeout_s=10) as box:
            [peek] = box.run([Program(code=PEEK, test="def check(f):\n    assert f()\n", entry_point="peek", id="peek")])
    return {"tmp": tmp, "secrets": secrets, "auth": server.auth, "bodies": server.bodies, "peek": peek}


def test_the_flow_ran_and_wrote_what_is_searched(secret_flow):
    tmp = secret_flow["tmp"]
    assert (tmp / "eval_hf" / "summary.json").exists() and (tmp / "eval_openai" / "summary.json").exists()
    assert (tmp / "train" / "eval" / "checkpoint-2" / "summary.json").exists()
    assert list((tmp / "wandb").glob("wandb/offline-run-*/run-*.wandb"))
    assert list((tmp / "report_wandb").rglob("*.wandb")) and (tmp / "report" / "report.json").exists()
    # the openai eval went through every stage: solved items were re-asked under constraints
    assert json.loads((tmp / "eval_openai" / "summary.json").read_text())["sustain"]["headline"]["arith"]["hard"]["n"] > 0


def test_no_canary_in_any_file_or_log(secret_flow):
    found = files_holding([secret_flow["tmp"]], secret_flow["secrets"])
    assert found == {}


def test_the_search_finds_a_planted_canary(secret_flow, tmp_path):
    # the search itself works: a canary written into a nested binary file is found
    planted = tmp_path / "a" / "b.bin"
    planted.parent.mkdir()
    planted.write_bytes(b"\x00\x01" + secret_flow["secrets"]["HF_TOKEN"].encode() + b"\xff")
    assert files_holding([tmp_path], secret_flow["secrets"]) == {"HF_TOKEN": [str(planted)]}


def test_openai_key_reaches_the_server_only_in_its_authorization_header(secret_flow):
    key = secret_flow["secrets"]["OPENAI_API_KEY"]
    assert secret_flow["auth"] and set(secret_flow["auth"]) == {f"Bearer {key}"}
    others = {var: value for var, value in secret_flow["secrets"].items() if var != "OPENAI_API_KEY"}
    for body in secret_flow["bodies"]:  # body + all headers: the key only in Authorization, no other key at all
        headers_without_auth = body.replace(f'"Authorization": "Bearer {key}"'.encode(), b"")
        assert key.encode() not in headers_without_auth
        assert not any(value.encode() in body for value in others.values())


def test_sandboxed_program_sees_no_secret(secret_flow):
    peek = secret_flow["peek"]
    assert peek.passed, (peek.reason, peek.message, peek.stdout[-1500:])
    view = json.loads(peek.stdout.strip().splitlines()[-1])
    assert view["seen"] == {}
    # it did look: its own environment was readable, and it tried its own, its parent's and pid 1's /proc entries
    assert view["env_bytes"] > 0 and view["tried"] >= 5 and view["readable"] >= 2, view


def test_the_peeking_program_finds_keys_where_they_are_visible(secret_flow, monkeypatch, capsys):
    # outside the sandbox, in a process that holds a key, the same program reports it
    monkeypatch.setenv("HF_TOKEN", secret_flow["secrets"]["HF_TOKEN"])
    scope: dict = {}
    exec(PEEK, scope)
    assert scope["peek"]() is False
    assert "os.environ" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])["seen"]
