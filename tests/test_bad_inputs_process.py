"""Bad input that needs a real process: two writers racing for one run folder, a killed lock holder,
a full stdout, an undecodable path under an ASCII locale, offline hub look-ups."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import missing

from sustain.eval.records import RecordStore
from sustain.eval.run_files import RunLock
from test_bad_inputs import assert_one_line_error
from tests.conftest import ROOT


class GatedAnswers(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint that answers only once the test opens its gate, so a run holds its
    folder for as long as the test needs, however slowly the machine starts processes."""

    gate = threading.Event()

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.gate.wait(timeout=300)
        payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": "The answer is 7."},
                                           "finish_reason": "stop"}], "usage": {"completion_tokens": 5}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture()
def slow_server():
    GatedAnswers.gate.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), GatedAnswers)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def env(**extra) -> dict:
    return dict(os.environ, TQDM_DISABLE="1", HF_HUB_DISABLE_PROGRESS_BARS="1", TOKENIZERS_PARALLELISM="false", **extra)


def sustain_process(args: list, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sustain", *args], cwd=ROOT, env=kw.pop("env", env()),
                            stdout=kw.pop("stdout", subprocess.PIPE), stderr=subprocess.PIPE, **kw)


def held(folder: Path) -> bool:
    try:
        RunLock(folder).acquire().release()
        return False
    except Exception:  # noqa: BLE001 - refused: another process holds it
        return True


def test_two_processes_on_one_out_one_is_refused_and_no_record_is_written_twice(slow_server, tmp_path):
    out = tmp_path / "run"
    args = ["eval", "--backend", "openai", "--model", "m", "--base-url", slow_server, "--tasks", "arith", "--limit", "6",
            "--batch-size", "1", "--request-retries", "0", "--request-timeout-s", "600", "--out", str(out)]
    first = sustain_process(args)
    deadline = time.monotonic() + 300
    while not held(out):
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    second = sustain_process(args)
    _, err2 = second.communicate(timeout=300)
    GatedAnswers.gate.set()
    _, err1 = first.communicate(timeout=300)
    assert first.returncode == 0, err1
    assert second.returncode == 2
    assert_one_line_error(err2.decode(), "is in use by another sustain process", "choose another --out")
    lines = (out / "baseline.jsonl").read_text().splitlines()
    keys = [(r["task"], r["item_id"], r["condition"]) for r in map(json.loads, lines)]
    assert len(keys) == len(set(keys)) == 6
    # the lock of a process killed while holding it does not outlive it
    GatedAnswers.gate.clear()
    third = sustain_process(args[:-1] + [str(tmp_path / "run2")])
    while not held(tmp_path / "run2"):
        assert third.poll() is None, third.communicate()
        time.sleep(0.02)
    third.send_signal(signal.SIGKILL)
    third.wait(timeout=60)
    assert not held(tmp_path / "run2")
    GatedAnswers.gate.set()
    kept = len(RecordStore(tmp_path / "run2" / "baseline.jsonl"))
    resumed = sustain_process(args[:-1] + [str(tmp_path / "run2")])
    assert resumed.wait(timeout=120) == 0
    assert len(RecordStore(tmp_path / "run2" / "baseline.jsonl")) == 6 >= kept


def test_stdout_on_a_full_device_is_one_line(tmp_path):
    if not Path("/dev/full").exists():
        missing("no /dev/full on this system (Linux provides it; CI has it)")
    out = tmp_path / "run"
    record = {"task": "arith", "item_id": "0", "condition": "base", "success": True, "output": "7"}
    (out).mkdir()
    (out / "run.json").write_text(json.dumps({"identity": {"model": "m", "seed": 0}}))
    (out / "baseline.jsonl").write_text(json.dumps(record) + "\n")
    with open("/dev/full", "w") as full:
        proc = sustain_process(["summary", str(out)], stdout=full)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert_one_line_error(err.decode(), "cannot write", "standard output", "No space left on device")
    assert (out / "summary.json").is_file()  # the work itself was kept


def test_undecodable_path_under_an_ascii_locale_is_one_line(tmp_path):
    bad = os.fsencode(str(tmp_path)) + b"/run-\xff\xfe"
    ascii_env = env(LC_ALL="C", LANG="C", PYTHONUTF8="0", PYTHONIOENCODING="")
    proc = subprocess.run([sys.executable, "-m", "sustain", "eval", "--model", "m", "--backend", "openai", "--base-url",
                           "http://127.0.0.1:9/v1", "--out", bad], cwd=ROOT, env=ascii_env, capture_output=True, timeout=120)
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr.decode("utf-8", "replace"), "is not valid text in this locale", "LANG=C.UTF-8")
    # a valid non-ASCII name under the same locale works end to end, messages included
    named = tmp_path / "r\u00e9sum\u00e9"
    proc = subprocess.run([sys.executable, "-m", "sustain", "summary", os.fsencode(str(named))], cwd=ROOT, env=ascii_env,
                          capture_output=True, timeout=120)
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr.decode("utf-8", "replace"), "no run.json")


def test_an_unreachable_hub_fails_at_once_without_retry_noise(tmp_path):
    hub = env(HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_OFFLINE="", TRANSFORMERS_OFFLINE="", HF_DATASETS_OFFLINE="",
              HF_HOME=str(tmp_path / "hf"))
    for args, needle in ((["eval", "--model", "someorg/somemodel", "--limit", "2"], "not found on the Hugging Face hub"),
                         (["eval", "--model", "m", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1",
                           "--tasks", "gsm8k"], "the hub is unreachable")):
        started = time.monotonic()
        proc = sustain_process([*args, "--out", str(tmp_path / "o")], env=hub)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 2
        assert_one_line_error(err.decode(), needle)
        assert time.monotonic() - started < 120
