"""The sandbox's contract: verdicts, reasons, plain-data calls, parallel order, limits, clean-up, choosing the isolation."""
import psutil
import pytest

from sustain.eval.errors import UserError
from sustain.eval.sandbox import Program, Sandbox
from sustain.eval.sandbox import isolation
from tests.conftest import need_capability, need_command

ADD_TEST = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-5, 5) == 0\n"


def add(body="return a + b", **kw):
    return Program(code=f"def add(a, b):\n    {body}\n", test=ADD_TEST, entry_point="add", **kw)


@pytest.fixture(scope="module")
def box():
    need_command("bwrap", "bubblewrap")
    with Sandbox(workers=2, timeout_s=2, memory_mb=256, max_file_mb=1, isolation="bwrap") as sandbox:
        yield sandbox


def reasons(results):
    return [(r.passed, r.reason) for r in results]


def test_verdicts_and_reasons(box):
    results = box.run([
        add(id="right"),
        add("return a - b", id="wrong"),
        add("return a +* b", id="syntax"),
        add("raise ValueError('no')", id="raises"),
        add("return [0] * 10**10", id="memory"),
        add("while True: pass", id="spins"),
        Program("import nothing_like_this\n", ADD_TEST, "add", id="import error"),
    ])
    assert [r.id for r in results] == ["right", "wrong", "syntax", "raises", "memory", "spins", "import error"]
    assert reasons(results) == [
        (True, "passed"),
        (False, "failed: AssertionError"),
        (False, "syntax error"),
        (False, "failed: ValueError"),
        (False, "memory"),
        (False, "timeout"),
        (False, "failed: ModuleNotFoundError"),
    ]


def test_output_so_far_is_kept_when_a_limit_ends_the_program(box):
    say = "import sys\nprint('got this far')\nsys.stdout.flush()\n"
    results = box.run([
        Program(say + "while True:\n    pass\n", ADD_TEST, "add", id="timeout"),
        Program(say + "blob = [bytearray(10 ** 7) for _ in range(1000)]\n", ADD_TEST, "add", id="memory"),
    ])
    assert [(r.reason, r.stdout) for r in results] == [("timeout", "got this far\n"), ("memory", "got this far\n")]


def test_values_cross_as_exact_plain_data(box):
    test = (
        "def check(f):\n"
        "    assert f('tuple') == (1, 2) and type(f('tuple')) is tuple\n"
        "    assert f('list') == [1, 2]\n"
        "    assert f('big') == 3 ** 200\n"
        "    assert f('nested') == {'k': {1, 2}, (1, 'a'): [b'x', 1.5, None, True, 2j, frozenset({3})]}\n"
    )
    good = (
        "def f(kind):\n"
        "    return {'tuple': (1, 2), 'list': [1, 2], 'big': 3 ** 200,\n"
        "            'nested': {'k': {1, 2}, (1, 'a'): [b'x', 1.5, None, True, 2j, frozenset({3})]}}[kind]\n"
    )
    lists_for_tuples = good.replace("'tuple': (1, 2)", "'tuple': [1, 2]")
    results = box.run([Program(good, test, "f"), Program(lists_for_tuples, test, "f")])
    assert reasons(results) == [(True, "passed"), (False, "failed: AssertionError")]


def test_tests_can_catch_the_programs_exceptions_and_call_helpers(box):
    code = "def helper(x):\n    return x * 2\n\ndef f(x):\n    if x < 0:\n        raise ValueError(x)\n    return helper(x)\n"
    test = (
        "def check(f):\n"
        "    try:\n        f(-1)\n        raise AssertionError('no error')\n    except ValueError:\n        pass\n"
        "    assert f(3) == helper(3) == 6\n"
    )
    [with_helper, without_export] = box.run([Program(code, test, "f", exports=("helper",)), Program(code, test, "f")])
    assert (with_helper.passed, with_helper.reason) == (True, "passed")
    assert (without_export.passed, without_export.reason) == (False, "failed: NameError")


def test_custom_call_statement(box):
    program = Program("def add(a, b):\n    return a + b\n", "def verify(fn, n):\n    assert fn(n, n) == 2 * n\n",
                      "add", call="verify(add, 21)")
    assert box.run([program])[0].passed


def test_output_is_captured_as_bounded_tails(box):
    chatty = add("print('out-' * 5000); import sys; print('err-marker', file=sys.stderr); return a + b")
    [result] = box.run([chatty])
    assert result.passed
    assert result.stdout.endswith("out-\n") and len(result.stdout) <= 2000
    assert "err-marker" in result.stderr


def test_many_programs_come_back_in_order(box):
    programs = [Program(f"def f():\n    return {i}\n", f"def check(f):\n    assert f() == {i if i % 3 else -1}\n", "f", id=str(i))
                for i in range(40)]
    results = box.run(programs)
    assert [r.id for r in results] == [str(i) for i in range(40)]
    assert [r.passed for r in results] == [i % 3 != 0 for i in range(40)]


def test_environment_is_scrubbed(box, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "fake-wandb-secret")
    code = "import os\ndef env():\n    return sorted(os.environ)\n"
    test = "def check(env):\n    print(env())\n    assert set(env()) <= {'PATH', 'LANG', 'HOME', 'PWD', 'LC_CTYPE'}, env()\n"
    assert box.run([Program(code, test, "env")])[0].passed


def test_user_mistakes_are_one_line_errors(box):
    with pytest.raises(UserError, match="Program objects"):
        box.run(["def f(): pass"])
    with pytest.raises(UserError, match="workers"):
        Sandbox(workers=0)
    with pytest.raises(UserError, match="unknown sandbox setting"):
        Sandbox(isolation="docker")


def test_closed_sandbox_leaves_no_process_and_refuses_work():
    need_command("bwrap", "bubblewrap")
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    sandbox = Sandbox(workers=2, timeout_s=2)
    started = {p.pid for p in psutil.Process().children(recursive=True)} - before
    assert started  # the workers exist while the sandbox is open
    assert sandbox.run([add()])[0].passed
    sandbox.close()
    alive = [p for p in started if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    with pytest.raises(UserError, match="closed"):
        sandbox.run([add()])


# ---------------------------------------------------------------- choosing the isolation


def test_unshare_is_named_and_says_what_it_gives_up(monkeypatch, capsys):
    need_command("unshare", "util-linux")
    problem = isolation.why_not("unshare")
    need_capability(problem is None, f"unshare cannot build the sandbox here: {problem}")
    monkeypatch.setattr(isolation, "_warned", set())
    monkeypatch.setenv("HF_TOKEN", "fake-hf-secret")
    with Sandbox(workers=1, timeout_s=3, isolation="unshare") as sandbox:
        assert sandbox.mode == "unshare"
        secret = Program("import os\ndef token():\n    return os.environ.get('HF_TOKEN')\n",
                         "def check(token):\n    assert token() == 'fake-hf-secret'\n", "token")
        results = sandbox.run([add(), add("return a - b"), secret])
    assert reasons(results) == [(True, "passed"), (False, "failed: AssertionError"), (False, "failed: AssertionError")]
    warning = capsys.readouterr().err
    assert "sandbox 'unshare'" in warning and "less review" in warning


def test_auto_is_bubblewrap():
    need_command("bwrap", "bubblewrap")
    assert isolation.resolve_mode("auto") == "bwrap"


def test_without_bubblewrap_auto_stops_with_the_fix_and_the_opt_in(monkeypatch):
    monkeypatch.setattr(isolation, "why_not", lambda mode: "bwrap is not installed" if mode == "bwrap" else None)
    for setting in ("auto", "bwrap"):
        with pytest.raises(UserError) as caught:
            isolation.resolve_mode(setting)
        assert "apt-get install bubblewrap" in caught.value.fix and "--sandbox unshare" in caught.value.fix
    monkeypatch.setattr(isolation, "why_not", lambda mode: f"{mode} is not installed")
    with pytest.raises(UserError, match="unshare"):
        isolation.resolve_mode("unshare")


def test_a_code_run_stops_before_generating_when_the_sandbox_cannot_run(monkeypatch, tmp_path):
    from sustain.eval.config import EvalConfig
    from sustain.eval.pipeline import Pipeline
    from tests.fakes import NoCalls

    monkeypatch.setattr(isolation, "why_not", lambda mode: f"{mode} is not installed")
    cfg = EvalConfig(model="m", tasks=["humaneval"], out=str(tmp_path / "run"), limit=2)
    with pytest.raises(UserError, match="bubblewrap"):
        Pipeline(cfg, NoCalls())
    assert not (tmp_path / "run" / "baseline.jsonl").exists()
    typo = EvalConfig(model="m", tasks=["arith"], out=str(tmp_path / "typo"), limit=2, sandbox="bwarp")
    with pytest.raises(UserError, match="unknown sandbox setting 'bwarp'"):
        Pipeline(typo, NoCalls())


def test_the_mode_is_recorded_in_run_json_records_and_summary(tmp_path):
    need_command("bwrap", "bubblewrap")
    import json

    from sustain.eval.config import EvalConfig
    from sustain.eval.generators import Generation, Generator
    from sustain.eval.pipeline import Pipeline
    from sustain.eval.summary import write_summary

    class Canonical(Generator):
        model_id = "canonical"

        def __init__(self, items):
            self.answers = {it.prompt: "```python\n" + it.meta["prompt"] + it.meta["canonical_solution"] + "```" for it in items}

        def generate(self, conversations, cfg):
            return [Generation(self.answers[c[-1]["content"]], "stop", 10) for c in conversations]

    cfg = EvalConfig(model="m", tasks=["humaneval"], out=str(tmp_path / "run"), limit=2, sandbox_workers=1)
    pipeline = Pipeline(cfg, None)
    pipeline._generator = Canonical(pipeline.items["humaneval"].values())
    try:
        pipeline.baseline()
    finally:
        pipeline.close()
    assert json.loads((tmp_path / "run" / "run.json").read_text())["sandbox"] == "bwrap"
    records = [json.loads(line) for line in (tmp_path / "run" / "baseline.jsonl").read_text().splitlines()]
    assert [(r["success"], r["detail"]["sandbox"]) for r in records] == [(True, "bwrap"), (True, "bwrap")]
    assert write_summary(tmp_path / "run")["sandbox"] == "bwrap"
    from sustain.eval.report.build import build_report

    report = build_report([tmp_path / "run"], tmp_path / "report")
    assert "Code sandbox: m: bwrap." in report.read_text()
