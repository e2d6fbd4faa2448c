"""LLM-based soft constraints: extract method/style/structure instructions from a solved output,
keep those an LLM judge finds the original output already follows, and judge constrained outputs.

The LLM is any Generator (the paper used Qwen3-32B behind a vLLM OpenAI-compatible server).
Prompts are files in prompts/. Replies are parsed with json-repair (fences, leading prose,
trailing commas, a single object instead of a list); a reply that still yields nothing usable is
recorded as error "unparseable", never raised. A generator UserError (timeout, unreachable) is
recorded per call as error "timeout" / "generator error"; after `max_consecutive_errors` failed
calls in a row the endpoint is taken to be down and a UserError is raised. Completions are cached
on disk by (model id, prompt, sampling), errors are not, so a rerun only redoes failed calls.

Guards: every proposed constraint goes through the code-level leak check (leak.py) before it is
judged, and a leaking one is kept as a record with rejected="leak" and the reasons; the judge may be
a different model than the extractor (default: the same), and each soft record names both; a reply
that is empty once <think> traces are stripped (a thinking model that spent its budget thinking) is
recorded as error "empty", distinct from "unparseable". Nothing is dropped silently: every reply
becomes a record that the summary counts (soft_summary.py).
"""
from __future__ import annotations

import re
import string
from importlib import resources
from pathlib import Path
from typing import Any

from json_repair import repair_json

from sustain.eval.constraints.base import CATEGORIES, Constraint, candidate, soft_id
from sustain.eval.constraints.cache import LLMCache, cache_key
from sustain.eval.constraints.leak import leak_reasons, leak_terms
from sustain.eval.errors import UserError
from sustain.eval.generators.base import Generator, SamplingConfig
from sustain.eval.tasks.base import strip_reasoning

SOFT_CATEGORIES = tuple(c for c, fam in CATEGORIES.items() if fam == "soft")


def load_prompt(name: str) -> string.Template:
    return string.Template(resources.files("sustain.eval.constraints.prompts").joinpath(name).read_text(encoding="utf-8"))


def parse_json_reply(text: str) -> Any:
    """The JSON value in an LLM reply (a dict or list), or None when there is none."""
    body = strip_reasoning(text or "")
    if not body:
        return None
    try:
        value = repair_json(body, return_objects=True)
    except Exception:  # json-repair on arbitrary model text: any failure means "no JSON here"
        return None
    return value if isinstance(value, (dict, list)) and value else None


def parse_constraint_list(value: Any) -> list[Any]:
    """Items of an extraction reply: a list, a single object, or {"constraints": [...]}."""
    if isinstance(value, dict):
        inner = next((v for v in value.values() if isinstance(v, list)), None) if "category" not in value else None
        value = inner if inner is not None else [value]
    items = []
    for v in value if isinstance(value, list) else []:
        items.extend(v if isinstance(v, list) else [v])  # json-repair returns [[...], {...}] for two values
    return items


def to_soft_constraint(item: Any) -> Constraint | None:
    if not isinstance(item, dict):
        return None
    category = str(item.get("category", "")).strip().lower()
    text = item.get("constraint") or item.get("instruction") or item.get("text")
    if category not in SOFT_CATEGORIES or not isinstance(text, str) or not text.strip():
        return None
    text = " ".join(text.split())
    return Constraint(id=soft_id(category, text), family="soft", category=category, text=text)


def parse_verdict(value: Any) -> tuple[bool | None, str | None]:
    """(satisfied, reason) from a judge reply; satisfied is None when the reply has no clear verdict."""
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, dict) and "satisfied" in v), None)
    if not isinstance(value, dict):
        return None, None
    raw, reason = value.get("satisfied"), value.get("reason")
    reason = str(reason) if reason is not None else None
    if isinstance(raw, bool):
        return raw, reason
    if isinstance(raw, str) and raw.strip().lower() in ("true", "yes", "false", "no"):
        return raw.strip().lower() in ("true", "yes"), reason
    return None, reason


def classify_error(exc: UserError) -> str:
    return "timeout" if re.search(r"time(d)?[ -]?out", str(exc), flags=re.IGNORECASE) else "generator error"


def _model_id(generator: Generator) -> str:
    return generator.model_id or type(generator).__name__


def reply_error(text: str) -> str:
    """Why a reply yielded nothing: "empty" when nothing is left outside <think> traces, else "unparseable"."""
    return "empty" if not strip_reasoning(text or "") else "unparseable"


class SoftExtractor:
    """Soft-constraint extraction (one LLM) and judging (the same LLM, or `judge`), with an on-disk call cache."""

    def __init__(self, generator: Generator, cache_dir: str | Path, sampling: SamplingConfig | None = None,
                 max_consecutive_errors: int = 3, judge: Generator | None = None,
                 judge_sampling: SamplingConfig | None = None):
        self.generator = generator
        self.judge = judge or generator
        self.model_id = _model_id(generator)
        self.judge_id = _model_id(self.judge)
        self.sampling = sampling or SamplingConfig(max_new_tokens=1024, temperature=0.0)
        self.judge_sampling = judge_sampling or self.sampling
        self.cache = LLMCache(cache_dir)
        self.max_consecutive_errors = max_consecutive_errors
        self.calls = 0  # prompts sent to the generator (cache hits excluded)
        self._failures_in_a_row = 0
        self._extract_prompt = load_prompt("soft_extract.txt")
        self._judge_prompt = load_prompt("soft_judge.txt")

    # -- public API -----------------------------------------------------------------------------
    def extract(self, question: str, output: str) -> list[dict]:
        """Candidate records (see base.candidate) for one solved output; self-evident ones are kept."""
        return self.extract_many([(question, output)])[0]

    def extract_many(self, pairs: list[tuple[str, str]], hidden: list[dict] | None = None) -> list[list[dict]]:
        """extract() for many items, with the LLM calls of each step batched.

        hidden: per item, what the task keeps secret (Task.hidden_answer): constraints that contain
        any of it are rejected by the leak check, never judged or used."""
        visible = [strip_reasoning(out) for _, out in pairs]
        terms = [leak_terms(h) for h in (hidden or [{} for _ in pairs])]
        replies = self._complete([self._extract_prompt.substitute(question=q, output=o) for (q, _), o in zip(pairs, visible)],
                                 self.generator, self.model_id, self.sampling)
        proposals: list[list[Any]] = []  # per item: Constraint or a finished record
        for reply, item_terms in zip(replies, terms):
            if isinstance(reply, dict):
                proposals.append([self._record(None, None, **reply)])
                continue
            items = parse_constraint_list(parse_json_reply(reply))
            if not items:
                proposals.append([self._record(None, None, error=reply_error(reply), raw=reply[:500])])
                continue
            seen, found = set(), []
            for item in items:
                c = to_soft_constraint(item)
                if c is None:
                    found.append(self._record(None, None, error="unparseable", raw=str(item)[:500]))
                elif c.id not in seen:
                    seen.add(c.id)
                    leaks = leak_reasons(c.text, item_terms)
                    found.append(self._record(c, None, rejected="leak", leak=leaks) if leaks else c)
            proposals.append(found)
        jobs = [(i, c) for i, found in enumerate(proposals) for c in found if isinstance(c, Constraint)]
        verdicts = iter(self._judge_many([(c, visible[i]) for i, c in jobs]))
        return [[self._verdict_record(p, next(verdicts)) if isinstance(p, Constraint) else p for p in found]
                for found in proposals]

    def judge_follow(self, constraint: Constraint, output: str) -> bool | None:
        """Whether an output follows a soft constraint; None when the judge gave no verdict."""
        return self.judge_follow_detail(constraint, output)["satisfied"]

    def judge_follow_detail(self, constraint: Constraint, output: str) -> dict:
        """{"satisfied": bool | None, "reason": str | None, "error": None | "empty" | "unparseable" | "timeout" | ...}."""
        verdict = self._judge_many([(constraint, strip_reasoning(output))])[0]
        if isinstance(verdict, dict):
            return {"satisfied": None, "reason": None, "error": verdict["error"]}
        satisfied, reason, raw = verdict
        return {"satisfied": satisfied, "reason": reason, "error": None if satisfied is not None else reply_error(raw)}

    # -- LLM calls ------------------------------------------------------------------------------
    def _judge_many(self, jobs: list[tuple[Constraint, str]]) -> list[tuple[bool | None, str | None, str] | dict]:
        replies = self._complete([self._judge_prompt.substitute(constraint=c.text, output=o) for c, o in jobs],
                                 self.judge, self.judge_id, self.judge_sampling)
        return [r if isinstance(r, dict) else (*parse_verdict(parse_json_reply(r)), r) for r in replies]

    def _record(self, c: Constraint | None, self_evident: bool | None, **extra) -> dict:
        return candidate(c, self_evident, "llm", extractor=self.model_id, judge=self.judge_id, **extra)

    def _verdict_record(self, c: Constraint, verdict) -> dict:
        if isinstance(verdict, dict):  # the judge call failed
            return self._record(c, None, **verdict)
        satisfied, reason, raw = verdict
        if satisfied is None:
            return self._record(c, None, error=reply_error(raw), raw=raw[:500], reason=reason)
        return self._record(c, satisfied, reason=reason)

    def _complete(self, prompts: list[str], generator: Generator, model_id: str,
                  sampling: SamplingConfig) -> list[str | dict]:
        """Completion text per prompt, or {"error": ..., "detail": ...} for a failed call."""
        keys = [cache_key(model_id, p, sampling) for p in prompts]
        results: dict[str, str | dict] = {k: self.cache.get(k) for k in keys if self.cache.get(k) is not None}
        todo = list(dict.fromkeys(k for k in keys if k not in results))  # each distinct prompt once
        prompt_of = dict(zip(keys, prompts))
        size = max(1, sampling.batch_size)
        for start in range(0, len(todo), size):
            batch = todo[start:start + size]
            try:
                texts = self._generate([prompt_of[k] for k in batch], generator, sampling)
            except UserError as exc:
                if len(batch) == 1:
                    results[batch[0]] = self._failed(exc, model_id)
                    continue
                texts = []
                for k in batch:  # find which calls fail, keep the others
                    try:
                        texts.append(self._generate([prompt_of[k]], generator, sampling)[0])
                    except UserError as one:
                        texts.append(self._failed(one, model_id))
            for k, text in zip(batch, texts):
                results[k] = text
                if isinstance(text, str):
                    self.cache.put(k, model_id, text)
        return [results[k] for k in keys]

    def _generate(self, prompts: list[str], generator: Generator, sampling: SamplingConfig) -> list[str]:
        self.calls += len(prompts)
        gens = generator.generate([[{"role": "user", "content": p}] for p in prompts], sampling)
        self._failures_in_a_row = 0
        return [g.text for g in gens]

    def _failed(self, exc: UserError, model_id: str) -> dict:
        self._failures_in_a_row += 1
        if self._failures_in_a_row >= self.max_consecutive_errors:
            raise UserError(
                f"the soft-constraint LLM {model_id!r} failed {self._failures_in_a_row} calls in a row (last: {exc.problem})",
                "check that the endpoint is up and the model name is right, then rerun (finished calls are cached)",
            ) from None
        return {"error": classify_error(exc), "detail": str(exc)}
