"""LLM-based soft constraints: extract method/style/structure instructions from a solved output,
keep those an LLM judge finds the original output already follows, and judge constrained outputs.

The LLM is any Generator (the paper used Qwen3-32B behind a vLLM OpenAI-compatible server).
Prompts are files in prompts/. Replies are parsed with json-repair (fences, leading prose,
trailing commas, a single object instead of a list); a reply that still yields nothing usable is
recorded as error "unparseable", never raised. A generator UserError (timeout, unreachable) is
recorded per call as error "timeout" / "generator error"; after `max_consecutive_errors` failed
calls in a row the endpoint is taken to be down and a UserError is raised. Completions are cached
on disk by (model id, prompt, sampling), errors are not, so a rerun only redoes failed calls.
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


class SoftExtractor:
    """Soft-constraint extraction and judging through one LLM, with an on-disk call cache."""

    def __init__(self, generator: Generator, cache_dir: str | Path, sampling: SamplingConfig | None = None,
                 max_consecutive_errors: int = 3):
        self.generator = generator
        self.model_id = generator.model_id or type(generator).__name__
        self.sampling = sampling or SamplingConfig(max_new_tokens=1024, temperature=0.0)
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

    def extract_many(self, pairs: list[tuple[str, str]]) -> list[list[dict]]:
        """extract() for many items, with the LLM calls of each step batched."""
        visible = [strip_reasoning(out) for _, out in pairs]
        replies = self._complete([self._extract_prompt.substitute(question=q, output=o) for (q, _), o in zip(pairs, visible)])
        proposals: list[list[Any]] = []  # per item: Constraint or a finished error record
        for reply in replies:
            if isinstance(reply, dict):
                proposals.append([candidate(None, None, "llm", **reply)])
                continue
            items = parse_constraint_list(parse_json_reply(reply))
            if not items:
                proposals.append([candidate(None, None, "llm", error="unparseable", raw=reply[:500])])
                continue
            seen, found = set(), []
            for item in items:
                c = to_soft_constraint(item)
                if c is None:
                    found.append(candidate(None, None, "llm", error="unparseable", raw=str(item)[:500]))
                elif c.id not in seen:
                    seen.add(c.id)
                    found.append(c)
            proposals.append(found)
        jobs = [(i, c) for i, found in enumerate(proposals) for c in found if isinstance(c, Constraint)]
        verdicts = iter(self._judge_many([(c, visible[i]) for i, c in jobs]))
        return [[self._verdict_record(p, next(verdicts)) if isinstance(p, Constraint) else p for p in found]
                for found in proposals]

    def judge_follow(self, constraint: Constraint, output: str) -> bool | None:
        """Whether an output follows a soft constraint; None when the judge gave no verdict."""
        verdict = self._judge_many([(constraint, strip_reasoning(output))])[0]
        return verdict[0] if isinstance(verdict, tuple) else None

    # -- LLM calls ------------------------------------------------------------------------------
    def _judge_many(self, jobs: list[tuple[Constraint, str]]) -> list[tuple[bool | None, str | None, str] | dict]:
        replies = self._complete([self._judge_prompt.substitute(constraint=c.text, output=o) for c, o in jobs])
        return [r if isinstance(r, dict) else (*parse_verdict(parse_json_reply(r)), r) for r in replies]

    @staticmethod
    def _verdict_record(c: Constraint, verdict) -> dict:
        if isinstance(verdict, dict):  # the judge call failed
            return candidate(c, None, "llm", **verdict)
        satisfied, reason, raw = verdict
        if satisfied is None:
            return candidate(c, None, "llm", error="unparseable", raw=raw[:500])
        return candidate(c, satisfied, "llm", reason=reason)

    def _complete(self, prompts: list[str]) -> list[str | dict]:
        """Completion text per prompt, or {"error": ..., "detail": ...} for a failed call."""
        keys = [cache_key(self.model_id, p, self.sampling) for p in prompts]
        results: dict[str, str | dict] = {k: self.cache.get(k) for k in keys if self.cache.get(k) is not None}
        todo = list(dict.fromkeys(k for k in keys if k not in results))  # each distinct prompt once
        prompt_of = dict(zip(keys, prompts))
        size = max(1, self.sampling.batch_size)
        for start in range(0, len(todo), size):
            batch = todo[start:start + size]
            try:
                texts = self._generate([prompt_of[k] for k in batch])
            except UserError as exc:
                if len(batch) == 1:
                    results[batch[0]] = self._failed(exc)
                    continue
                texts = []
                for k in batch:  # find which calls fail, keep the others
                    try:
                        texts.append(self._generate([prompt_of[k]])[0])
                    except UserError as one:
                        texts.append(self._failed(one))
            for k, text in zip(batch, texts):
                results[k] = text
                if isinstance(text, str):
                    self.cache.put(k, self.model_id, text)
        return [results[k] for k in keys]

    def _generate(self, prompts: list[str]) -> list[str]:
        self.calls += len(prompts)
        gens = self.generator.generate([[{"role": "user", "content": p}] for p in prompts], self.sampling)
        self._failures_in_a_row = 0
        return [g.text for g in gens]

    def _failed(self, exc: UserError) -> dict:
        self._failures_in_a_row += 1
        if self._failures_in_a_row >= self.max_consecutive_errors:
            raise UserError(
                f"the soft-constraint LLM {self.model_id!r} failed {self._failures_in_a_row} calls in a row (last: {exc.problem})",
                "check that the endpoint is up and the model name is right, then rerun (finished calls are cached)",
            ) from None
        return {"error": classify_error(exc), "detail": str(exc)}
