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

from dataclasses import asdict
from pathlib import Path

from tqdm.auto import tqdm

from sustain.eval import constraints as C
from sustain.eval.config import EvalConfig, template_options
from sustain.eval.errors import UserError
from sustain.eval.generators import Generator, SamplingConfig, open_generator
from sustain.eval.item_identity import data_fingerprint, item_fingerprint, refuse_changed_items
from sustain.eval.records import RecordStore, record_key, write_json_atomic
from sustain.eval.seeds import stable_seed
from sustain.eval.shards import shard_items
from sustain.eval.summary import write_summary
from sustain.eval.run_files import RunLock, has_records, open_records, read_run_json
from sustain.eval.tasks import Grade, Item, Task, open_task
from sustain.eval.validate import check_text, out_folder_problem, validate_eval_config


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


def same_setting(key: str, theirs, mine) -> bool:
    """A model path recorded relative to where that run started still names the same folder."""
    if theirs == mine:
        return True
    return key == "model" and isinstance(theirs, str) and Path(theirs).expanduser().exists() and \
        str(Path(theirs).expanduser().resolve()) == mine


def check_items(task: str, items: list[Item]) -> dict[str, Item]:
    """Items by id; two items with one id would share one record and one of them would vanish."""
    by_id: dict[str, Item] = {}
    for item in items:
        if not isinstance(item.prompt, str) or not item.prompt.strip():
            raise UserError(f"task {task!r}: item {item.id!r} has no prompt text", "give every item a text question")
        if item.id in by_id:
            raise UserError(f"task {task!r}: item id {item.id!r} appears twice in the data",
                            "give every item its own id (remove or rename the duplicate)")
        by_id[item.id] = item
    return by_id


def grade_safely(task: Task, items: list[Item], generations: list) -> list[Grade]:
    """Grades for a batch; an item the grader cannot handle (malformed gold) fails alone, with its reason,
    instead of discarding the batch with the valid items of every task in it."""
    try:
        return task.grade_generations(items, generations)
    except UserError:
        raise
    except Exception:  # noqa: BLE001 - find the item(s) at fault one by one
        pass
    grades = []
    for item, generation in zip(items, generations):
        try:
            grades.append(task.grade_generations([item], [generation])[0])
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - recorded on the item, never a lost batch
            grades.append(Grade(success=False, answer=None, score=0.0,
                                detail={"reason": "grading error", "error": f"{type(exc).__name__}: {exc}"[:300]}))
    return grades


class Pipeline:
    def __init__(self, cfg: EvalConfig, generator: Generator | None = None, shard: tuple[int, int] | None = None):
        """shard=(rank, world_size): this process evaluates only its share of each task's items
        (sustain.eval.shards runs the shares and merges their records)."""
        # Everything is checked before the folder is locked and claimed: a mistake leaves no trace.
        check_text("model", cfg.model, what="PATH_OR_NAME")
        cfg = validate_eval_config(cfg, check_model=generator is None)
        out_folder_problem(cfg.out)
        self.cfg = cfg
        self.out = Path(cfg.out)
        self._generator = generator
        self._owns_generator = generator is None  # close only what this pipeline opened
        self._soft = None
        self.tasks: dict[str, Task] = {}
        self.items: dict[str, dict[str, Item]] = {}
        self._lock = None
        try:
            self._load_tasks(shard)
            self._lock = RunLock(self.out).acquire()
            self.base = open_records(self.out, "baseline.jsonl", create=True)
            refuse_changed_items(self.base, self.items, self.out)
            self._claim_folder()
            self.extracted = open_records(self.out, "constraints.jsonl", create=True)
            self.constrained = open_records(self.out, "constrained.jsonl", create=True)
            self.control = open_records(self.out, "control.jsonl", create=True)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _validate(cfg: EvalConfig) -> EvalConfig:
        """The settings checks without the model (e.g. a recipe's eval block at training start)."""
        return validate_eval_config(cfg, check_model=False)

    def _load_tasks(self, shard: tuple[int, int] | None) -> None:
        cfg = self.cfg
        for name in cfg.tasks:
            task = open_task(name, cfg)
            self.tasks[name] = task
            items = task.load(cfg.split, cfg.limit)
            if items and shard:
                items = shard_items(items, *shard)  # may be empty: a small task on many ranks
            elif not items:
                raise UserError(f"task {name!r} has no items (split {cfg.split!r}, limit {cfg.limit})",
                                "check the data file, the split and --limit")
            self.items[name] = check_items(name, items)
        # stops here, before any generation, when a code task's sandbox cannot run on this machine
        modes = {m for m in (t.sandbox_mode() for t in self.tasks.values()) if m}
        self.sandbox_mode = ",".join(sorted(modes)) or None

    def _claim_folder(self) -> None:
        """Write run.json, or refuse a folder whose records another model or other settings made.

        A run.json with no records beside it protects nothing (a run that failed before its first
        record): it is replaced, so a corrected command is never locked out by its own typo."""
        mine = self.cfg.identity()
        if "soft" not in self.cfg.families:
            mine["soft_model"] = None  # this run makes no soft records
        if has_records(self.out):
            meta = read_run_json(self.out, required=False)
            if meta is None:
                raise UserError(f"{self.out} holds records but no run.json saying which model made them",
                                "choose a new --out, or delete the folder to start over")
            theirs = meta["identity"]
            # a family can be added later: the soft judge is fixed by the first run that used one
            if mine["soft_model"] is None:
                mine["soft_model"] = theirs.get("soft_model")
            elif theirs.get("soft_model") is None:
                theirs = {**theirs, "soft_model": mine["soft_model"]}
            for key in EvalConfig.IDENTITY:
                if key == "model" and key not in theirs:
                    raise UserError(f"{self.out / 'run.json'} does not record the {key} that made its records",
                                    "choose a new --out, or delete the folder to start over")
                if key in theirs and not same_setting(key, theirs[key], mine[key]):
                    raise UserError(
                        f"run folder {self.out} was made with {key}={theirs[key]!r}, not {mine[key]!r}",
                        "choose a new --out for this model/setting, or delete the folder to start over",
                    )
        # the loaded items' content, per task: the records' own hashes refuse changed data above; this
        # one lets a report tell the same data under other paths from other data (report/comparable.py)
        mine["data_fingerprint"] = {name: data_fingerprint(items.values()) for name, items in self.items.items()}
        write_json_atomic(self.out / "run.json", {"identity": mine, "config": asdict(self.cfg), "sandbox": self.sandbox_mode})

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
        if self._lock is not None:
            self._lock.release()
            self._lock = None

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
                gs = grade_safely(self.tasks[task], [chunk[i][1] for i in idx], [gens[i] for i in idx])
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
                for k in range(1, min(self.cfg.k_max, len(kept)) + 1):  # no k beyond the constraints there are
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
