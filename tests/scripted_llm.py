"""A scripted OpenAI-compatible chat server for tests: answers by prompt kind, with planted faults."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ScriptedLLM:
    """Soft-constraint extraction and judging answers.

    The first distinct extraction prompt gets malformed JSON, the second one never answers in
    time (every attempt sleeps past the client's timeout); all others get a good JSON list.
    """

    def __init__(self, slow_s: float = 3.0):
        self.slow_s = slow_s
        self.extract_prompts: list[str] = []
        self.requests = 0
        self.lock = threading.Lock()
        script = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][-1]["content"]
                text = script.answer(prompt)
                if text is None:
                    time.sleep(script.slow_s)
                    text = "[]"
                payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": text},
                                                   "finish_reason": "stop"}],
                                      "usage": {"completion_tokens": 5}}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, prompt: str) -> str | None:
        with self.lock:
            self.requests += 1
            if prompt.startswith("Decide whether the response follows"):
                return json.dumps({"satisfied": True, "reason": "it does"})
            if prompt not in self.extract_prompts:
                self.extract_prompts.append(prompt)
            rank = self.extract_prompts.index(prompt)
        if rank == 0:
            return 'Sure! Some instructions: be clear, be brief.'  # not JSON at all
        if rank == 1:
            return None  # a timeout
        return json.dumps([{"category": "style", "constraint": "Use short plain sentences."},
                           {"category": "structure", "constraint": "Put the final result in the last sentence."}])

    def close(self):
        self.server.shutdown()
