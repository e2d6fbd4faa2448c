"""The SustainScore pipeline: baseline -> constraint extraction -> constrained run -> scores.

Each stage reads and writes the run folder; every item of every stage is one record keyed by
(task, item id, condition), so a stage skips what is done and a killed run resumes to the same
records. summary.json is derived from the records alone.

  run.json          the settings that made the records (a different model is refused) and a
                    fingerprint of each task's loaded items (identity.data_fingerprint)
  baseline.jsonl    condition "base": the plain run; each record holds its item's content hash, so
                    a changed data file in the same folder is refused
  constraints.jsonl condition "extract:<family>": candidate constraints with self-evidence verdicts
  constrained.jsonl condition "<family>:k<k>": the re-run with k constraints appended (nested sets:
                    the k set holds the k-1 set)
  control.jsonl     condition "control": each solved item re-run with no constraint, in the same
                    batches as its constrained runs (the noise floor beside every SustainScore)
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
from sustain.eval.item_identity import data_fingerprint, item_fingerprint, refuse_changed_items
from sustain.eval.records import RecordStore, record_key, write_json_atomic
from sustain.eval.sandbox.isolation import SETTINGS as SANDBOX_SETTINGS
from sustain.eval.seeds import stable_seed
from sustain.eval.shards import shard_items
from sustain.eval.summary import write_summary
from sustain.eval.tasks import TASKS, Item, Task, open_task


def partial_batches(stores: list[RecordStore]) -> set:
    """Keys of the written records of any batch with fewer records than its size (a kill between
    its writes to two stores): the resumed run queues them again with the batch's missing jobs, so
    the batch is regenerated whole, in the layout an uninterrupted run had (the written records are
    kept: appending an existing key is a no-op)."""
    found: dict[str, list] = {}
    sizes: dict[str, int] = {}
    for store in stores:
        for r in store:
            if "batch" in r:
                found.setdefault(r["batch"]["id"], []).append(record_key(r))
                sizes[r["batch"]["id"]] = r["batch"]["size"]
    return {key for batch, keys in found.items() if len(keys) < sizes[batch] for key in keys}


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
        self.base = RecordStore(self.out / "baseline.jsonl")
        refuse_changed_items(self.base, self.items, self.out)
        self._claim_folder()
        self.extracted = RecordStore(self.out / "constraints.jsonl")
        self.constrained = RecordStore(self.out / "constrained.jsonl")
        self.control = RecordStore(self.out / "control.jsonl")

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
        if "soft" not in self.cfg.families:
            mine["soft_model"] = None  # this run makes no soft records
        if meta.exists():
            theirs = json.loads(meta.read_text()).get("identity", {})
            # a family can be added later: the soft judge is fixed by the first run that used one
            if mine["soft_model"] is None:
                mine["soft_model"] = theirs.get("soft_model")
            elif theirs.get("soft_model") is None:
                theirs = {**theirs, "soft_model": mine["soft_model"]}
            for key in EvalConfig.IDENTITY:
                if key in theirs and theirs[key] != mine[key]:
                    raise UserError(
                        f"run folder {self.out} was made with {key}={theirs[key]!r}, not {mine[key]!r}",
                        "choose a new --out for this model/setting, or delete the folder to start over",
                    )
        # the loaded items' content, per task: the records' own hashes refuse changed data above; this
        # one lets a report tell the same data under other paths from other data (report/comparable.py)
        mine["data_fingerprint"] = {name: data_fingerprint(items.values()) for name, items in self.items.items()}
        write_json_atomic(meta, {"identity": mine, "config": asdict(self.cfg), "sandbox": self.sandbox_mode})

    # -- resources, created only when a stage has work to do ------------------------------------
    def _make(self, backend: str, model: str, base_url: str | None, chat_template_kwargs: dict | None = None,
              **extra) -> Generator:
        # chat_template_kwargs: e.g. enable_thinking=false for a thinking extractor or judge
        return open_generator(backend, model, base_url=base_url, api_key_env=self.cfg.api_key_env,
                              timeout_s=self.cfg.request_timeout_s, max_retries=self.cfg.request_retries,
                              chat_template_kwargs=template_options(chat_template_kwargs) or None, **extra)

    @property
    def generator(self) -> Generator:
        if self._generator is None:
            self._generator = self._make(self.cfg.backend, self.cfg.model, self.cfg.base_url, dtype=self.cfg.dtype)
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

    def _generate(self, chunk: list[tuple[RecordStore, Item, str, dict]]) -> list:
        """One generate call per distinct set of stop strings the chunk's tasks declare (usually one)."""
        gens = [None] * len(chunk)
        by_stop: dict[tuple[str, ...], list[int]] = {}
        for i, (_, _, task, _) in enumerate(chunk):
            by_stop.setdefault(tuple(self.tasks[task].stop), []).append(i)
        for stop, idx in by_stop.items():
            for i, gen in zip(idx, self.generator.generate([chunk[i][3]["messages"] for i in idx], self.sampling(stop))):
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

    def _generate_and_store(self, jobs: list[tuple[RecordStore, Item, str, dict]], desc: str) -> None:
        """jobs: (store, item, task name, record fields incl. messages), generated in this order in
        batches of batch_size (jobs of several stores may share a batch); graded; appended per batch."""
        bs = max(1, self.cfg.batch_size)
        again = partial_batches(list({id(j[0]): j[0] for j in jobs}.values()))
        todo = [j for j in jobs if (key := (j[2], j[1].id, j[3]["condition"])) not in j[0] or key in again]
        if not todo:
            return
        for start in tqdm(range(0, len(todo), bs), desc=desc, unit="batch", leave=False):
            chunk = todo[start:start + bs]
            gens = self._generate(chunk)
            by_task: dict[str, list[int]] = {}
            for i, (_, _, task, _) in enumerate(chunk):
                by_task.setdefault(task, []).append(i)
            grades = [None] * len(chunk)
            for task, idx in by_task.items():
                gs = self.tasks[task].grade_generations([chunk[i][1] for i in idx], [gens[i] for i in idx])
                for i, g in zip(idx, gs):
                    grades[i] = g
            by_store: dict[int, tuple[RecordStore, list[dict]]] = {}
            # a batch spanning several stores is written store by store: its records carry the batch's
            # id and size, so partial_batches can redo a batch that a kill cut between two writes
            shared = len({id(j[0]) for j in chunk}) > 1
            batch = {"id": "|".join(map(str, (chunk[0][2], chunk[0][1].id, chunk[0][3]["condition"]))), "size": len(chunk)}
            for (store, item, task, fields), gen, grade in zip(chunk, gens, grades):
                rec = {"task": task, "item_id": item.id, "gold": gold_text(item),
                       "answer_kind": self.tasks[task].answer_kind, **fields,
                       "output": gen.text, "finish_reason": gen.finish_reason, "n_tokens": gen.n_tokens,
                       **grade.to_dict(), **({"batch": batch} if shared else {})}
                by_store.setdefault(id(store), (store, []))[1].append(self._with_follow(rec))
            for store, records in by_store.values():
                store.append(records)

    def baseline(self) -> None:
        jobs = []
        for name, task in self.tasks.items():
            for item in self.items[name].values():
                jobs.append((self.base, item, name, {"condition": "base", "item_hash": item_fingerprint(item),
                                                     "messages": task.messages(item)}))
        self._generate_and_store(jobs, "baseline")

    def solved(self) -> list[dict]:
        return [r for r in self.base if r["success"] and r["task"] in self.tasks and r["item_id"] in self.items[r["task"]]]

    def extract(self) -> None:
        """Back-translate self-evident constraints from every solved baseline output, per family
        (one record per item and family, so adding a family later extracts only that family)."""
        bs = max(1, self.cfg.batch_size)
        for family in self.cfg.families:
            condition = f"extract:{family}"
            todo = [r for r in self.solved() if (r["task"], r["item_id"], condition) not in self.extracted]
            for start in tqdm(range(0, len(todo), bs), desc=f"{family} constraints", unit="batch", leave=False):
                chunk = todo[start:start + bs]
                items = [self.items[r["task"]][r["item_id"]] for r in chunk]
                if family == "soft":
                    found = self.soft.extract_many([(it.prompt, r["output"]) for it, r in zip(items, chunk)],
                                                   hidden=[self.tasks[r["task"]].hidden_answer(it)
                                                           for it, r in zip(items, chunk)])
                else:
                    found = [C.extract_hard(it.prompt, r["output"], seed=stable_seed(self.cfg.seed, r["task"], it.id),
                                            avoid=[gold_text(it)] if gold_text(it) else ())
                             for it, r in zip(items, chunk)]
                self.extracted.append([{"task": r["task"], "item_id": r["item_id"], "condition": condition,
                                        "family": family, "candidates": candidates}
                                       for r, candidates in zip(chunk, found)])

    def _kept(self, rec: dict, family: str) -> list:
        cats = self.cfg.categories
        kept = C.kept_constraints(rec["candidates"])
        return [c for c in kept if c.family == family and (not cats or c.category in cats)]

    def constrained_run(self) -> None:
        """Each solved item: a control re-run with no constraint, then k = 1..k_max nested constraint
        sets per family, queued together so the control shares its batches with the constrained runs."""
        jobs = []
        for r in self.solved():
            name, item = r["task"], self.items[r["task"]][r["item_id"]]
            task = self.tasks[name]
            jobs.append((self.control, item, name, {"condition": "control", "messages": task.messages(item)}))
            for family in self.cfg.families:
                rec = self.extracted.get((name, item.id, f"extract:{family}"))
                if rec is None:
                    continue
                kept = self._kept(rec, family)
                seed = stable_seed(self.cfg.seed, name, item.id, family)  # no k: the sets are nested
                for k in range(1, self.cfg.k_max + 1):
                    chosen = C.choose_constraints(kept, k, seed)
                    if not chosen:
                        break
                    text = C.render(chosen)
                    jobs.append((self.constrained, item, name, {
                        "condition": f"{family}:k{k}", "family": family, "k": k,
                        "constraints": [c.to_dict() for c in chosen], "constraint_text": text,
                        "position": self.cfg.position,
                        "messages": task.messages(item, constraint=text, position=self.cfg.position),
                    }))
        self._generate_and_store(jobs, "constrained + control")

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
