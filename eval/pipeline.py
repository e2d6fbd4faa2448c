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

from dataclasses import asdict
from pathlib import Path

from tqdm.auto import tqdm

from sustain.eval import constraints as C
from sustain.eval.config import EvalConfig, template_options
from sustain.eval.errors import UserError
from sustain.eval.generators import Generator, SamplingConfig, open_generator
from sustain.eval.records import RecordStore, write_json_atomic
from sustain.eval.seeds import stable_seed
from sustain.eval.summary import write_summary
from sustain.eval.run_files import RunLock, has_records, open_records, read_run_json
from sustain.eval.tasks import Grade, Item, Task, open_task
from sustain.eval.validate import check_text, out_folder_problem, validate_eval_config


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
    def __init__(self, cfg: EvalConfig, generator: Generator | None = None):
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
            self._load_tasks()
            self._lock = RunLock(self.out).acquire()
            self._claim_folder()
            self.base = open_records(self.out, "baseline.jsonl", create=True)
            self.extracted = open_records(self.out, "constraints.jsonl", create=True)
            self.constrained = open_records(self.out, "constrained.jsonl", create=True)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _validate(cfg: EvalConfig) -> EvalConfig:
        """The settings checks without the model (e.g. a recipe's eval block at training start)."""
        return validate_eval_config(cfg, check_model=False)

    def _load_tasks(self) -> None:
        cfg = self.cfg
        for name in cfg.tasks:
            task = open_task(name, cfg)
            self.tasks[name] = task
            items = task.load(cfg.split, cfg.limit)
            if not items:
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
        if has_records(self.out):
            meta = read_run_json(self.out, required=False)
            if meta is None:
                raise UserError(f"{self.out} holds records but no run.json saying which model made them",
                                "choose a new --out, or delete the folder to start over")
            theirs = meta["identity"]
            for key in EvalConfig.IDENTITY:
                if key == "model" and key not in theirs:
                    raise UserError(f"{self.out / 'run.json'} does not record the {key} that made its records",
                                    "choose a new --out, or delete the folder to start over")
                if key in theirs and not same_setting(key, theirs[key], mine[key]):
                    raise UserError(
                        f"run folder {self.out} was made with {key}={theirs[key]!r}, not {mine[key]!r}",
                        "choose a new --out for this model/setting, or delete the folder to start over",
                    )
        write_json_atomic(self.out / "run.json", {"identity": mine, "config": asdict(self.cfg), "sandbox": self.sandbox_mode})

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
        if self._lock is not None:
            self._lock.release()
            self._lock = None

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
                gs = grade_safely(self.tasks[task], [chunk[i][0] for i in idx], [gens[i] for i in idx])
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
                for k in range(1, min(self.cfg.k_max, len(kept)) + 1):  # no k beyond the constraints there are
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
