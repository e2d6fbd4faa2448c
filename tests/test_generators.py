"""Generation backends: hf on tiny local models, openai against a scripted local server, vllm's guard."""
import json
from collections import Counter
import shutil
import socket
import sys
import threading
import time
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sustain.eval.errors import UserError
from sustain.eval.generators import make_generator
from sustain.eval.generators.base import SamplingConfig
from sustain.eval.generators.chat import PLAIN_CHAT_TEMPLATE
from sustain.eval.generators.hf import HFGenerator
from sustain.eval.generators.openai_http import OpenAIGenerator
from sustain.eval.generators.prefix_reuse import order_by_prefix
from sustain.eval.tasks.arith import ArithTask
from sustain.train.tiny import save_untrained

CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "user", "content": "Anna has 12 coins and buys 30 more. How many coins does Anna have?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Sam had 50 cards. " * 6}],
    [{"role": "user", "content": "There are 44 cards in a box and 95 cards on the table."}],
]


@pytest.fixture(scope="module")
def untrained_dir(tmp_path_factory):
    return save_untrained(tmp_path_factory.mktemp("untrained"))


@pytest.fixture(scope="module")
def untrained(untrained_dir):
    return HFGenerator(str(untrained_dir), device="cpu")


# ---------------------------------------------------------------- hf


def test_greedy_output_does_not_depend_on_batching(untrained):
    cfg = SamplingConfig(max_new_tokens=12)
    alone = [untrained.generate([c], cfg)[0] for c in CONVERSATIONS]
    batched = untrained.generate(CONVERSATIONS, SamplingConfig(max_new_tokens=12, batch_size=4))
    assert [g.text for g in batched] == [g.text for g in alone]
    assert len({g.text for g in alone}) > 1  # different prompts, different outputs: the test can fail


def test_generate_options_reach_generate_and_static_cache_keeps_greedy_output(untrained):
    cfg = SamplingConfig(max_new_tokens=12, batch_size=4)
    default = [g.text for g in untrained.generate(CONVERSATIONS, cfg)]
    untrained.generate_options = {"cache_implementation": "static"}
    try:
        assert [g.text for g in untrained.generate(CONVERSATIONS, cfg)] == default
        untrained.generate_options = {"cache_implementation": "no-such-cache"}
        with pytest.raises(ValueError):  # the option does reach model.generate
            untrained.generate(CONVERSATIONS[:1], cfg)
    finally:
        untrained.generate_options = {}


def test_length_limit_and_stop_strings(untrained):
    full = untrained.generate(CONVERSATIONS[:1], SamplingConfig(max_new_tokens=16))[0]
    assert (full.finish_reason, full.n_tokens) == ("length", 16)
    stop = full.text[len(full.text) // 2 :][:3]  # a piece from the middle of the text
    cut = untrained.generate(CONVERSATIONS[:1], SamplingConfig(max_new_tokens=16, stop=[stop]))[0]
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[: full.text.index(stop)]


def test_seeded_sampling_is_reproducible(untrained):
    cfg = SamplingConfig(max_new_tokens=10, temperature=1.0, seed=3)
    first = untrained.generate(CONVERSATIONS, cfg)
    assert [g.text for g in untrained.generate(CONVERSATIONS, cfg)] == [g.text for g in first]
    other = untrained.generate(CONVERSATIONS, SamplingConfig(max_new_tokens=10, temperature=1.0, seed=4))
    assert [g.text for g in other] != [g.text for g in first]


def test_prompt_text_uses_the_chat_template_or_a_plain_format(untrained, untrained_dir, tmp_path):
    assert untrained.prompt_text(CONVERSATIONS[0]) == "<|user|>\nHi<|end|>\n<|assistant|>\n"
    shutil.copytree(untrained_dir, tmp_path / "base", ignore=shutil.ignore_patterns("chat_template.jinja"))
    plain = HFGenerator(str(tmp_path / "base"), device="cpu")
    assert plain.prompt_text(CONVERSATIONS[2]) == f"System: Be brief.\n\nUser: {'Sam had 50 cards. ' * 6}\n\nAssistant:"
    out = plain.generate(CONVERSATIONS[:2], SamplingConfig(max_new_tokens=8))
    assert len(out) == 2 and all(g.n_tokens <= 8 for g in out)


def test_folder_without_weights_names_folder_and_fix(untrained_dir, tmp_path):
    only_config = tmp_path / "checkpoint-10"
    only_config.mkdir()
    shutil.copy(untrained_dir / "config.json", only_config)
    with pytest.raises(UserError, match="checkpoint-10 has no weights.*fix:"):
        make_generator("hf", model=str(only_config))
    with pytest.raises(UserError, match="no config.json"):
        HFGenerator(str(tmp_path))
    with pytest.raises(UserError, match="not found"):
        HFGenerator(str(tmp_path / "missing"))


def test_unknown_hub_name_offline_is_a_user_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError, match="no-such-org/no-such-model.*fix:"):
        HFGenerator("no-such-org/no-such-model")


@pytest.mark.slow
def test_trained_tiny_model_batched_equals_alone(tiny_model):
    task = ArithTask()
    items = task.load("test", limit=24)
    # prompts of different lengths, some with an appended instruction, so batches are left-padded
    convs = [task.messages(it, "Answer with at most 20 words." if i % 3 == 0 else None) for i, it in enumerate(items)]
    gen = HFGenerator(str(tiny_model), device="cpu")
    cfg = SamplingConfig(max_new_tokens=40)
    alone = [gen.generate([c], cfg)[0].text for c in convs]
    batched = [g.text for g in gen.generate(convs, SamplingConfig(max_new_tokens=40, batch_size=8))]
    assert batched == alone
    plain = [g for c, g in zip(convs, batched) if len(c[-1]["content"]) < 100]
    assert sum(task.grade(it, t).success for it, t in zip(items, batched)) >= len(plain) * 0.8
    cut = gen.generate(convs[1:2], SamplingConfig(max_new_tokens=40, stop=[". The answer"]))[0]
    assert cut.finish_reason == "stop" and cut.text == alone[1].split(". The answer")[0]


@pytest.mark.slow
def test_prefix_reuse_prefills_a_shared_prefix_once_with_unchanged_greedy_output(tiny_model):
    """The constrained stage's shape: per item the question alone and with constraints appended (a
    shared prefix), several such groups in one batch, beside prompts that share nothing."""
    task = ArithTask()
    items = task.load("test", limit=5)
    convs = [task.messages(it, extra) for it in items[:3] for extra in (None, "Answer with at most 20 words.", "Use no commas.")]
    convs += [task.messages(it) for it in items[3:]]
    gen = HFGenerator(str(tiny_model), device="cpu")
    cfg = SamplingConfig(max_new_tokens=40, batch_size=8)
    groups = order_by_prefix(gen.token_rows([gen.prompt_text(c) for c in convs]), 8)[1]
    assert sorted(Counter(groups).values()) == [1, 1, 3, 3, 3]  # one group per item, not one for the shared template
    fed = []
    prefill = lambda m, args, out: fed.append(args[0].numel() if args[0].shape[1] > 1 else 0)  # noqa: E731
    hook = gen.model.get_input_embeddings().register_forward_hook(prefill)
    gen.prefix_reuse_min_tokens = None
    plain = gen.generate(convs, cfg)
    plain_fed, fed[:] = sum(fed), []
    gen.prefix_reuse_min_tokens = 8
    reused = gen.generate(convs, cfg)
    reused_fed = sum(fed)
    hook.remove()
    assert [(g.text, g.n_tokens, g.finish_reason) for g in reused] == [(g.text, g.n_tokens, g.finish_reason) for g in plain]
    assert len({g.text for g in plain}) >= 5  # different prompts, different outputs: the test can fail
    assert sum(task.grade(items[i // 3], plain[i].text).success for i in (0, 3, 6)) >= 2  # it is the model that learned arith
    # prompt tokens prefilled: 11 padded full prompts without reuse; with it each item's question
    # once, then the suffixes
    assert reused_fed < 0.8 * plain_fed, (reused_fed, plain_fed)


# ---------------------------------------------------------------- openai (a scripted local server)


class ScriptedServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), ScriptedHandler)
        self.calls: dict[str, int] = {}
        self.auth: list[str | None] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class ScriptedHandler(BaseHTTPRequestHandler):
    """The requested model name picks the behaviour."""

    def log_message(self, *args):
        pass

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (the timeout test)
            pass

    def do_POST(self):
        if self.path != "/v1/chat/completions":
            return self._send(404, b'{"error": "not found"}')
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server = self.server
        model = req["model"]
        server.calls[model] = server.calls.get(model, 0) + 1
        server.auth.append(self.headers.get("Authorization"))
        if model == "garbage":
            return self._send(200, b"<html>not json</html>")
        if model == "always-500" or (model == "flaky" and server.calls[model] == 1):
            return self._send(500, b'{"error": "boom"}')
        if model == "slow":
            time.sleep(1.0)
        text = "echo: " + req["messages"][-1]["content"]
        finish = "stop"
        if len(text) > req["max_tokens"]:
            text, finish = text[: req["max_tokens"]], "length"
        body = {"choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": finish}],
                "usage": {"completion_tokens": len(text)}}
        return self._send(200, json.dumps(body).encode())


@pytest.fixture()
def server():
    srv = ScriptedServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def client(server, model, **kw):
    return OpenAIGenerator(base_url=server.url + "/v1", model=model, backoff_s=0.01, **kw)


def test_openai_answers_in_order_with_the_key_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("MY_TEST_KEY", "sk-secret-123")
    gen = client(server, "echo", api_key_env="MY_TEST_KEY", concurrency=4)
    convs = [[{"role": "user", "content": f"q{i}"}] for i in range(20)]
    out = gen.generate(convs, SamplingConfig(max_new_tokens=100))
    assert [g.text for g in out] == [f"echo: q{i}" for i in range(20)]
    assert all(g.finish_reason == "stop" and g.n_tokens == len(g.text) for g in out)
    assert server.auth == ["Bearer sk-secret-123"] * 20
    assert "sk-secret" not in repr(vars(gen))  # the key is not kept on the object
    short = gen.generate(convs[:1], SamplingConfig(max_new_tokens=5))[0]
    assert (short.text, short.finish_reason) == ("echo:", "length")
    cut = gen.generate(convs[:1], SamplingConfig(max_new_tokens=100, stop=[": "]))[0]
    assert cut.text == "echo"


def test_openai_retries_a_500_then_succeeds(server):
    out = client(server, "flaky").generate([[{"role": "user", "content": "x"}]], SamplingConfig())
    assert out[0].text == "echo: x" and server.calls["flaky"] == 2


def test_openai_persistent_500_and_garbage_are_user_errors(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-shown")
    with pytest.raises(UserError, match=r"chat/completions answered HTTP 500 after 3 attempt") as exc:
        client(server, "always-500", max_retries=2).generate([[{"role": "user", "content": "x"}]], SamplingConfig())
    assert server.calls["always-500"] == 3 and "sk-never-shown" not in str(exc.value)
    with pytest.raises(UserError, match=r"HTTP 200 with a body that is not JSON.*fix:"):
        client(server, "garbage").generate([[{"role": "user", "content": "x"}]], SamplingConfig())
    assert server.calls["garbage"] == 1  # a malformed body is not retried


def test_openai_timeout_is_retried_then_reported(server):
    gen = client(server, "slow", timeout_s=0.2, max_retries=1)
    with pytest.raises(UserError, match="did not answer within 0.2 s after 2 attempt"):
        gen.generate([[{"role": "user", "content": "x"}]], SamplingConfig())


def test_openai_unreachable_is_one_line_with_the_fix():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gen = OpenAIGenerator(base_url=f"http://127.0.0.1:{port}", model="m", max_retries=1, backoff_s=0.01)
    with pytest.raises(UserError) as exc:
        gen.generate([[{"role": "user", "content": "x"}]], SamplingConfig())
    msg = str(exc.value)
    assert msg.startswith(f"cannot reach http://127.0.0.1:{port}/v1/chat/completions : connection refused")
    assert msg.endswith("(fix: start the server or check --base-url)") and "\n" not in msg


# ---------------------------------------------------------------- vllm


def test_vllm_missing_is_a_user_error(monkeypatch):
    from sustain.eval.generators.vllm_backend import VLLMGenerator  # the module imports without vllm

    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` fail even where it is installed
    with pytest.raises(UserError, match=r"vllm is not installed \(fix: pip install 'sustain-suite\[vllm\]' on a GPU machine\)"):
        VLLMGenerator("some/model")


def test_vllm_maps_sampling_config_and_outputs(monkeypatch, untrained_dir):
    seen = {}

    class FakeLLM:
        def __init__(self, **kwargs):
            seen["llm"] = kwargs

        def get_tokenizer(self):
            return types.SimpleNamespace(chat_template=None)

        def chat(self, conversations, params, **kwargs):
            seen["chat"] = (conversations, params, kwargs)
            done = types.SimpleNamespace(text="7 = 7.\nUser: more", finish_reason="stop", token_ids=[1, 2, 3])
            cut = types.SimpleNamespace(text="7 +", finish_reason="length", token_ids=[1, 2])
            return [types.SimpleNamespace(outputs=[done]), types.SimpleNamespace(outputs=[cut])]

    fake = types.SimpleNamespace(LLM=FakeLLM, SamplingParams=lambda **kw: types.SimpleNamespace(**kw))
    monkeypatch.setitem(sys.modules, "vllm", fake)
    from sustain.eval.generators.vllm_backend import VLLMGenerator

    gen = VLLMGenerator(str(untrained_dir), seed=5)
    out = gen.generate(CONVERSATIONS[:2], SamplingConfig(max_new_tokens=9, temperature=0.5, top_p=0.9, stop=["="], seed=2))
    convs, params, kwargs = seen["chat"]
    assert convs == CONVERSATIONS[:2] and seen["llm"]["model"] == str(untrained_dir.resolve())
    assert seen["llm"]["enable_prefix_caching"] is True
    assert (params.max_tokens, params.temperature, params.top_p, params.seed) == (9, 0.5, 0.9, 2)
    assert params.stop == ["=", "\nUser:"]  # plain-format models also stop at the next user turn
    assert kwargs["chat_template"] == PLAIN_CHAT_TEMPLATE and kwargs["add_generation_prompt"]
    assert [(g.text, g.finish_reason, g.n_tokens) for g in out] == [("7 ", "stop", 3), ("7 +", "length", 2)]
