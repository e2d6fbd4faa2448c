"""The SustainScore pipeline: baseline -> constraint extraction -> constrained run -> scores.

Each stage reads and writes the run folder; every item of every stage is one record keyed by
(task, item id, condition), so a stage skips what is done and a killed run resumes to the same
records. summary.json is derived from the records alone.

  run.json          the settings that made the records (a different model is refused)
  baseline.jsonl    condition "base": the plain run
  constraints.jsonl condition "extract": candidate constraints with self-evidence verdicts
  constrained.jsonl condition "<family>:k<k>": the re-run with k constraints appended
  attention.jsonl   condition "<family>:k<k>": constraint attention per decoding step (optional)
  summary.json      scores with n and 95% intervals, failure classes
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from tqdm.auto import tqdm

from sustain.eval import constraints as C
from sustain.eval.config import EvalConfig, template_options
from sustain.eval.errors import UserError
from sustain.eval.generators import Generator, SamplingConfig, open_generator
from sustain.eval.records import RecordStore, write_json_atomic
from sustain.eval.sandbox.isolation import SETTINGS as SANDBOX_SETTINGS
from sustain.eval.seeds import stable_seed
from sustain.eval.shards import shard_items
from sustain.eval.summary import write_summary
from sustain.eval.tasks import TASKS, Item, Task, open_task


def gold_text(item: Item) -> str | None:
    return str(item.gold) if isinstance(item.gold, (str, int, float)) else None


class Pipeline:
    def __init__(self, cfg: EvalConfig, generator: Generator | None = None, shard: tuple[int, int] | None = None):
        """shard=(rank, world_size): this process evaluates only its share of each task's items
        (sustain.eval.shards runs the shares and merges their records)."""
        self._validate(cfg)
        self.cfg = cfg
        self.out = Path(cfg.out)
        self._generator = generator
        self._owns_generator = generator is None  # close only what this pipeline opened
        self._soft = None
        self.tasks: dict[str, Task] = {}
        self.items: dict[str, dict[str, Item]] = {}
        for name in cfg.tasks:
            task = open_task(name, cfg)
            items = task.load(cfg.split, cfg.limit)
            if items and shard:
                items = shard_items(items, *shard)  # may be empty: a small task on many ranks
            elif not items:
                raise UserError(f"task {name!r} has no items (split {cfg.split!r}, limit {cfg.limit})",
                                "check the data file, the split and --limit")
            self.tasks[name] = task
            self.items[name] = {it.id: it for it in items}
        # stops here, before any generation, when a code task's sandbox cannot run on this machine
        modes = {m for m in (t.sandbox_mode() for t in self.tasks.values()) if m}
        self.sandbox_mode = ",".join(sorted(modes)) or None
        self._claim_folder()
        self.base = RecordStore(self.out / "baseline.jsonl")
        self.extracted = RecordStore(self.out / "constraints.jsonl")
        self.constrained = RecordStore(self.out / "constrained.jsonl")

    @staticmethod
    def _validate(cfg: EvalConfig) -> None:
        if not cfg.model:
            raise UserError("no model given", "pass --model PATH_OR_NAME")
        if not cfg.tasks:
            raise UserError("no tasks given", f"pass --tasks {','.join(TASKS)} (or module:Class)")
        if cfg.sandbox not in SANDBOX_SETTINGS:  # checked even when no task runs code: a typo is never ignored
            raise UserError(f"unknown sandbox setting {cfg.sandbox!r}", f"use one of: {', '.join(SANDBOX_SETTINGS)}")
        bad = [f for f in cfg.families if f not in C.FAMILIES]
        if bad:
            raise UserError(f"unknown constraint family {bad[0]!r}", f"use: {', '.join(C.FAMILIES)}")
        for cat in cfg.categories or []:
            C.check_category(cat)
        if cfg.f1_threshold is not None and not 0 < cfg.f1_threshold <= 1:
            raise UserError(f"f1_threshold must be in (0, 1], got {cfg.f1_threshold}", "use e.g. 0.5, or leave it unset for exact match")
        if cfg.k_max < 1:
            raise UserError(f"k_max must be at least 1, got {cfg.k_max}", "pass --k-max 1 or more")
        if "soft" in cfg.families and not cfg.soft_model:
            raise UserError("soft constraints need an LLM", "pass --soft-model NAME (and --soft-base-url for an endpoint)")

    def _claim_folder(self) -> None:
        """Write run.json, or refuse a folder whose records another model or other settings made."""
        meta = self.out / "run.json"
        mine = self.cfg.identity()
        if meta.exists():
            theirs = json.loads(meta.read_text()).get("identity", {})
            for key in EvalConfig.IDENTITY:
                if key in theirs and theirs[key] != mine[key]:
                    raise UserError(
                        f"run folder {self.out} was made with {key}={theirs[key]!r}, not {mine[key]!r}",
                        "choose a new --out for this model/setting, or delete the folder to start over",
                    )
        write_json_atomic(meta, {"identity": mine, "config": asdict(self.cfg), "sandbox": self.sandbox_mode})

    # -- resources, created only when a stage has work to do ------------------------------------
    def _make(self, backend: str, model: str, base_url: str | None, chat_template_kwargs: dict | None = None) -> Generator:
        # chat_template_kwargs: e.g. enable_thinking=false for a thinking extractor or judge
        return open_generator(backend, model, base_url=base_url, api_key_env=self.cfg.api_key_env,
                              timeout_s=self.cfg.request_timeout_s, max_retries=self.cfg.request_retries,
                              chat_template_kwargs=template_options(chat_template_kwargs) or None)

    @property
    def generator(self) -> Generator:
        if self._generator is None:
            self._generator = self._make(self.cfg.backend, self.cfg.model, self.cfg.base_url)
        return self._generator

    @property
    def soft(self):
        if self._soft is None:
            c = self.cfg
            extractor = self._make(c.soft_backend, c.soft_model, c.soft_base_url, c.soft_chat_template_kwargs)
            judge = None
            if c.judge_model:  # a separate judge; by default the extractor judges too
                judge = self._make(c.judge_backend or c.soft_backend, c.judge_model, c.judge_base_url or c.soft_base_url,
                                   c.judge_chat_template_kwargs)
            self._soft = C.SoftExtractor(
                extractor, cache_dir=self.out / "llm_cache",
                sampling=SamplingConfig(max_new_tokens=c.soft_max_new_tokens, temperature=0.0, batch_size=c.batch_size),
                judge=judge,
                judge_sampling=SamplingConfig(max_new_tokens=c.judge_max_new_tokens, temperature=0.0, batch_size=c.batch_size))
        return self._soft

    def sampling(self, stop: tuple[str, ...] = ()) -> SamplingConfig:
        c = self.cfg
        return SamplingConfig(max_new_tokens=c.max_new_tokens, temperature=c.temperature, seed=c.seed,
                              batch_size=c.batch_size, stop=list(stop))

    def _generate(self, chunk: list[tuple[Item, str, dict]]) -> list:
        """One generate call per distinct set of stop strings the chunk's tasks declare (usually one)."""
        gens = [None] * len(chunk)
        by_stop: dict[tuple[str, ...], list[int]] = {}
        for i, (_, task, _) in enumerate(chunk):
            by_stop.setdefault(tuple(self.tasks[task].stop), []).append(i)
        for stop, idx in by_stop.items():
            for i, gen in zip(idx, self.generator.generate([chunk[i][2]["messages"] for i in idx], self.sampling(stop))):
                gens[i] = gen
        return gens

    # -- stages -------------------------------------------------------------------------------
    def run(self) -> dict:
        try:
            self.baseline()
            self.extract()
            self.constrained_run()
            if self.cfg.attention:  # the model is loaded only if records are missing
                from sustain.eval.attention.stage import run_attention_stage

                run_attention_stage(self.out, lambda: self.generator, layers=self.cfg.attention_layers)
            if self.cfg.ablation:
                from sustain.eval.attention.ablation_stage import AblationSettings, run_ablation_stage

                run_ablation_stage(self.out, lambda: self.generator, AblationSettings.from_config(self.cfg))
        finally:
            self.close()
        return write_summary(self.out)

    def close(self) -> None:
        for task in self.tasks.values():
            task.close()
        if self._generator is not None and self._owns_generator:
            self._generator.close()
            self._generator = None
        if self._soft is not None:
            self._soft.generator.close()
            self._soft = None

    def _generate_and_store(self, store: RecordStore, jobs: list[tuple[Item, str, dict]], desc: str) -> None:
        """jobs: (item, task name, record fields incl. messages). Generates, grades, appends per batch."""
        bs = max(1, self.cfg.batch_size)
        todo = [j for j in jobs if (j[1], j[0].id, j[2]["condition"]) not in store]
        if not todo:
            return
        for start in tqdm(range(0, len(todo), bs), desc=desc, unit="batch", leave=False):
            chunk = todo[start:start + bs]
            gens = self._generate(chunk)
            records = []
            by_task: dict[str, list[int]] = {}
            for i, (_, task, _) in enumerate(chunk):
                by_task.setdefault(task, []).append(i)
            grades = [None] * len(chunk)
            for task, idx in by_task.items():
                gs = self.tasks[task].grade_generations([chunk[i][0] for i in idx], [gens[i] for i in idx])
                for i, g in zip(idx, gs):
                    grades[i] = g
            for (item, task, fields), gen, grade in zip(chunk, gens, grades):
                rec = {"task": task, "item_id": item.id, "gold": gold_text(item),
                       "answer_kind": self.tasks[task].answer_kind, **fields,
                       "output": gen.text, "finish_reason": gen.finish_reason, "n_tokens": gen.n_tokens,
                       **grade.to_dict()}
                records.append(self._with_follow(rec))
            store.append(records)

    def baseline(self) -> None:
        jobs = []
        for name, task in self.tasks.items():
            for item in self.items[name].values():
                jobs.append((item, name, {"condition": "base", "messages": task.messages(item)}))
        self._generate_and_store(self.base, jobs, "baseline")

    def solved(self) -> list[dict]:
        return [r for r in self.base if r["success"] and r["task"] in self.tasks and r["item_id"] in self.items[r["task"]]]

    def extract(self) -> None:
        """Back-translate self-evident constraints from every solved baseline output."""
        todo = [r for r in self.solved() if (r["task"], r["item_id"], "extract") not in self.extracted]
        bs = max(1, self.cfg.batch_size)
        for start in tqdm(range(0, len(todo), bs), desc="constraints", unit="batch", leave=False):
            chunk = todo[start:start + bs]
            items = [self.items[r["task"]][r["item_id"]] for r in chunk]
            soft = ([[] for _ in chunk] if "soft" not in self.cfg.families
                    else self.soft.extract_many([(it.prompt, r["output"]) for it, r in zip(items, chunk)],
                                                hidden=[self.tasks[r["task"]].hidden_answer(it) for it, r in zip(items, chunk)]))
            records = []
            for r, item, soft_candidates in zip(chunk, items, soft):
                hard = []
                if "hard" in self.cfg.families:
                    gold = gold_text(item)
                    hard = C.extract_hard(item.prompt, r["output"], seed=stable_seed(self.cfg.seed, r["task"], item.id),
                                          avoid=[gold] if gold else ())
                records.append({"task": r["task"], "item_id": r["item_id"], "condition": "extract",
                                "candidates": hard + soft_candidates})
            self.extracted.append(records)

    def _kept(self, rec: dict, family: str) -> list:
        cats = self.cfg.categories
        kept = C.kept_constraints(rec["candidates"])
        return [c for c in kept if c.family == family and (not cats or c.category in cats)]

    def constrained_run(self) -> None:
        jobs = []
        for rec in self.extracted:
            if rec["task"] not in self.tasks or rec["item_id"] not in self.items[rec["task"]]:
                continue
            item = self.items[rec["task"]][rec["item_id"]]
            task = self.tasks[rec["task"]]
            for family in self.cfg.families:
                kept = self._kept(rec, family)
                for k in range(1, self.cfg.k_max + 1):
                    chosen = C.choose_constraints(kept, k, stable_seed(self.cfg.seed, rec["task"], item.id, family, k))
                    if not chosen:
                        continue
                    text = C.render(chosen)
                    jobs.append((item, rec["task"], {
                        "condition": f"{family}:k{k}", "family": family, "k": k,
                        "constraints": [c.to_dict() for c in chosen], "constraint_text": text,
                        "position": self.cfg.position,
                        "messages": task.messages(item, constraint=text, position=self.cfg.position),
                    }))
        self._generate_and_store(self.constrained, jobs, "constrained")

    def _with_follow(self, rec: dict) -> dict:
        """Check each constraint on a constrained output (code for hard ones, the LLM judge for soft)."""
        if "constraints" not in rec:
            return rec
        follow, judged = [], []
        for c in map(C.Constraint.from_dict, rec["constraints"]):
            if c.family == "hard":
                follow.append(C.check_hard(c, rec["output"]))
                continue
            verdict = self.soft.judge_follow_detail(c, rec["output"])
            follow.append(verdict["satisfied"])
            judged.append({"id": c.id, **verdict})
        rec["follow"] = follow
        if judged:  # the judge's reasons, and why a verdict is missing (empty / unparseable reply)
            rec["follow_judge"] = judged
        rec["followed_all"] = None if None in follow else all(follow)
        return rec


def run_eval(cfg: EvalConfig, generator: Generator | None = None) -> dict:
    """Run every stage (skipping what is done) and return the summary."""
    return Pipeline(cfg, generator).run()
