"""Any OpenAI-compatible server (vLLM serve, TGI, llama.cpp, a hosted API): POST /v1/chat/completions.

Requests run concurrently in a small thread pool; 429, 5xx, timeouts and dropped connections are
retried with exponential backoff. The API key is read from the environment for each request and
is never logged, stored on the object, or put in an error message.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import requests
import requests.adapters

from sustain.eval.errors import UserError
from sustain.eval.generators.base import Generation, Generator, SamplingConfig
from sustain.eval.generators.chat import truncate_at_stop

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
MAX_BACKOFF_S = 30.0


class _Transient(Exception):
    """A failure worth retrying; the message says what happened."""


def chat_completions_url(base_url: str) -> str:
    """Accepts "http://host:8000", "http://host:8000/" or "http://host:8000/v1"."""
    base = base_url.rstrip("/")
    return f"{base}/chat/completions" if base.endswith("/v1") else f"{base}/v1/chat/completions"


def _connection_reason(exc: Exception) -> str:
    text = str(exc).lower()
    for needle, reason in (("refused", "connection refused"), ("name or service", "unknown host"), ("resolve", "unknown host")):
        if needle in text:
            return reason
    return type(exc).__name__


class OpenAIGenerator(Generator):
    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        timeout_s: float = 120.0,
        max_retries: int = 4,
        backoff_s: float = 1.0,
        concurrency: int = 8,
        extra_body: dict | None = None,
        chat_template_kwargs: dict | None = None,
    ):
        if not base_url.startswith(("http://", "https://")):
            raise UserError(f"base URL {base_url!r} is not an http(s) URL", "pass e.g. --base-url http://localhost:8000/v1")
        self.url = chat_completions_url(base_url)
        self.model = model
        self.model_id = f"openai:{model}@{base_url.rstrip('/')}"
        self.api_key_env = api_key_env  # the variable's name only, never its value
        self.timeout_s, self.max_retries, self.backoff_s = timeout_s, max_retries, backoff_s
        self.concurrency = max(1, concurrency)
        self.extra_body = dict(extra_body or {})
        if chat_template_kwargs:  # vLLM and SGLang servers pass these to the chat template
            self.extra_body["chat_template_kwargs"] = dict(chat_template_kwargs)
        # One session shared by the workers (urllib3's connection pool is thread-safe), sized to them.
        self._session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=self.concurrency)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def generate(self, conversations: list[list[dict]], cfg: SamplingConfig) -> list[Generation]:
        if not conversations:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(conversations))) as pool:
            futures = [pool.submit(self._one, conv, cfg) for conv in conversations]
            try:
                return [f.result() for f in futures]
            except BaseException:
                for f in futures:  # the first error decides; do not keep hammering the server
                    f.cancel()
                raise

    def _payload(self, conversation: list[dict], cfg: SamplingConfig) -> dict:
        body = {
            "model": self.model,
            "messages": conversation,
            "max_tokens": cfg.max_new_tokens,
            "temperature": cfg.temperature,
            "top_p": cfg.top_p,
            "seed": cfg.seed,
        }
        if cfg.stop:
            body["stop"] = list(cfg.stop)
        body.update(self.extra_body)
        return body

    def _one(self, conversation: list[dict], cfg: SamplingConfig) -> Generation:
        payload = self._payload(conversation, cfg)
        for attempt in range(self.max_retries + 1):
            try:
                data = self._post(payload)
                return self._parse(data, cfg)
            except _Transient as exc:
                if attempt == self.max_retries:
                    raise UserError(f"{exc} after {self.max_retries + 1} attempt(s)", self._fix_for(str(exc))) from None
                time.sleep(min(MAX_BACKOFF_S, self.backoff_s * 2**attempt))
        raise AssertionError("unreachable")

    def _fix_for(self, problem: str) -> str:
        if problem.startswith("cannot reach"):
            return "start the server or check --base-url"
        return "check the server's logs, or retry later / with fewer concurrent requests"

    def _post(self, payload: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        try:
            resp = self._session.post(self.url, json=payload, headers=headers, timeout=self.timeout_s)
        except requests.Timeout:
            raise _Transient(f"timed out: {self.url} did not answer within {self.timeout_s:g} s") from None
        except requests.ConnectionError as exc:
            raise _Transient(f"cannot reach {self.url} : {_connection_reason(exc)}") from None
        if resp.status_code in RETRY_STATUS:
            raise _Transient(f"{self.url} answered HTTP {resp.status_code}")
        if resp.status_code >= 400:
            hint = {401: f"set a valid key in ${self.api_key_env}", 403: f"set a valid key in ${self.api_key_env}",
                    404: "check --base-url and that the server serves this --model"}
            raise UserError(
                f"{self.url} answered HTTP {resp.status_code}: {_snippet(resp.text)}",
                hint.get(resp.status_code, "check the request settings (model name, max tokens)"),
            )
        try:
            return resp.json()
        except ValueError:
            raise UserError(
                f"{self.url} answered HTTP {resp.status_code} with a body that is not JSON: {_snippet(resp.text)}",
                "check that --base-url points to an OpenAI-compatible server",
            ) from None

    def _parse(self, data: dict, cfg: SamplingConfig) -> Generation:
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            reason = choice.get("finish_reason") or "stop"
        except (KeyError, IndexError, TypeError, AttributeError):
            raise UserError(
                f"{self.url} answered JSON without choices[0].message: {_snippet(str(data))}",
                "check that --base-url points to an OpenAI-compatible chat completions server",
            ) from None
        text, hit_stop = truncate_at_stop(text, list(cfg.stop))  # in case the server ignored `stop`
        usage = data.get("usage") or {}
        n_tokens = int(usage.get("completion_tokens") or 0)
        return Generation(text=text, finish_reason="length" if reason == "length" and not hit_stop else "stop", n_tokens=n_tokens)

    def close(self) -> None:
        self._session.close()


def _snippet(text: str, limit: int = 120) -> str:
    one_line = " ".join(str(text).split())
    return repr(one_line[:limit] + ("..." if len(one_line) > limit else ""))
