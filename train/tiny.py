"""The offline tiny base model: a digit-aware BPE and a ~0.5M-parameter Llama trained on `arith`.

Nothing comes from a hub: the tokenizer is trained here with `tokenizers`, the model is built from
a LlamaConfig and pretrained with TRL's SFTTrainer (loss on the answer only). The result is a plain
Hugging Face model folder (config.json, model.safetensors, tokenizer files, chat template) that
every later stage loads like any other checkpoint.

    sustain tiny --out runs/tiny-base [--steps 1000] [--instruction-rate 0.3] [--seed 0]
    sustain tiny --cached     # the tests' default base into the cache (`make tiny-model`)

`ensure_tiny_base(cache_dir, **config)` builds once per config and reuses the folder afterwards.
"""
from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sustain.eval.errors import UserError, argument_parser, run_entry
from sustain.eval.tasks.arith import ArithTask

log = logging.getLogger("sustain.train.tiny")
MAX_STEPS = 100_000


def cache_dir() -> Path:
    """Where built tiny models are kept for the demo and the tests: $SUSTAIN_CACHE_DIR/tiny-models,
    by default .cache/ in the checkout."""
    root = Path(__file__).resolve().parents[1]
    return Path(os.environ.get("SUSTAIN_CACHE_DIR", root / ".cache")) / "tiny-models"

# Bump when the recipe below changes, so cached folders built by an older recipe are not reused.
RECIPE_VERSION = 1

PAD, END, SYSTEM, USER, ASSISTANT = "<|pad|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"
SPECIAL_TOKENS = [PAD, END, SYSTEM, USER, ASSISTANT]
# The end-of-turn token is inside {% generation %} so TRL's assistant_only_loss teaches the model to stop.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "<|assistant|>\n{% generation %}{{ message['content'] }}<|end|>{% endgeneration %}"
    "{% else %}<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@dataclass(frozen=True)
class TinyConfig:
    """Everything that determines the built model; its hash names the cache folder."""

    steps: int = 1000  # budget in optimizer steps, not seconds: a shared CPU varies 3x in speed
    seed: int = 0
    instruction_rate: float = 0.0  # fraction of training prompts with an appended self-evident instruction
    instruction_ids: tuple[str, ...] | None = None  # None: all of sustain.eval.tasks.arith.INSTRUCTIONS
    ops: str = "+"
    digits: int = 2
    batch_size: int = 64
    learning_rate: float = 2e-3
    train_rows: int = 16384  # distinct rows; the trainer cycles over them for `steps`
    vocab_size: int = 512
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 384

    @classmethod
    def from_options(cls, **options) -> "TinyConfig":
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise UserError(f"unknown tiny-model option(s): {', '.join(unknown)}", f"valid options: {', '.join(valid)}")
        if options.get("instruction_ids") is not None:
            options["instruction_ids"] = tuple(options["instruction_ids"])
        return cls(**options)

    def key(self) -> str:
        payload = json.dumps({"recipe": RECIPE_VERSION, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    def task(self) -> ArithTask:
        return ArithTask(seed=0, ops=tuple(self.ops), digits=self.digits)


def build_tokenizer(vocab_size: int = 512):
    """A byte-level BPE where every digit is its own token, wrapped in PreTrainedTokenizerFast.

    Trained on a fixed arith corpus (with instruction texts), so every config shares one tokenizer.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    corpus_rows = ArithTask(seed=0, ops="+-*").train_rows(4000, seed=12345, instruction_rate=0.5, format="text")
    corpus = [f"{r['prompt']}\n{r['completion']}" for r in corpus_rows]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # any text stays encodable
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=END, pad_token=PAD)
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build_model(tokenizer, cfg: TinyConfig):
    """A freshly initialised Llama-style causal LM sized by `cfg`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(cfg.seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=512,  # room for appended constraints
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def save_tokenizer(tokenizer, folder: Path) -> None:
    """Save, then pin the generic class: AutoTokenizer must not rebuild a Llama tokenizer (new ids)."""
    tokenizer.save_pretrained(folder)
    cfg_path = folder / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")


def save_untrained(out_dir: str | Path, **config) -> Path:
    """A randomly initialised tiny model folder in ~1 s: for tests of mechanics, not of skill."""
    cfg = TinyConfig.from_options(**config)
    out_dir = Path(out_dir)
    tokenizer = build_tokenizer(cfg.vocab_size)
    build_model(tokenizer, cfg).save_pretrained(out_dir)
    save_tokenizer(tokenizer, out_dir)
    return out_dir


def train_tiny(out_dir: str | Path, cfg: TinyConfig, progress: bool = True, threads: int | None = 1) -> Path:
    """Build the tokenizer and model, pretrain on arith with SFTTrainer, save to out_dir.

    threads: torch CPU threads. One by default: this model's ops are so small that on a shared
    machine two threads wait on each other's barriers (measured 5-8x slower per step under load).
    """
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    out_dir = Path(out_dir)
    started = time.time()
    tokenizer = build_tokenizer(cfg.vocab_size)
    model = build_model(tokenizer, cfg)
    rows = cfg.task().train_rows(
        cfg.train_rows, seed=cfg.seed, instruction_rate=cfg.instruction_rate, instruction_ids=cfg.instruction_ids
    )
    dataset = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])
    args = SFTConfig(
        output_dir=str(out_dir / "trainer"),
        max_steps=cfg.steps,
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        weight_decay=0.0,
        max_length=256,
        completion_only_loss=True,  # loss on the worked solution, not on the question
        logging_steps=max(1, cfg.steps // 10),
        save_strategy="no",
        report_to="none",
        seed=cfg.seed,
        bf16=False,
        gradient_checkpointing=False,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=not progress,
        dataloader_num_workers=0,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads or previous_threads)
    try:
        result = trainer.train()
    finally:  # the caller's process (a test session, the demo) keeps its own setting
        torch.set_num_threads(previous_threads)
    shutil.rmtree(out_dir / "trainer", ignore_errors=True)
    model.save_pretrained(out_dir)
    save_tokenizer(tokenizer, out_dir)
    info = {
        "config": dataclasses.asdict(cfg),
        "recipe": RECIPE_VERSION,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_seconds": round(time.time() - started, 1),
        "final_train_loss": round(float(result.training_loss), 4),
    }
    (out_dir / "tiny_build.json").write_text(json.dumps(info, indent=2) + "\n")
    return out_dir


def _build_atomically(final: Path, cfg: TinyConfig, progress: bool) -> Path:
    """Train into a temp folder next to `final`, then rename: a killed build leaves no half model."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        train_tiny(tmp, cfg, progress=progress)
        os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def ensure_tiny_base(cache_dir: str | Path, progress: bool = False, **config) -> Path:
    """The folder of the tiny base model for `config`, built on first use and reused afterwards.

    A file lock makes concurrent callers (parallel test sessions) wait for one build.
    """
    cfg = TinyConfig.from_options(**config)
    cache_dir = Path(cache_dir)
    final = cache_dir / f"tiny-base-{cfg.key()}"
    if final.is_dir():
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f"{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not final.is_dir():
            for stale in cache_dir.glob(f".{final.name}.tmp-*"):  # left by a killed build
                shutil.rmtree(stale, ignore_errors=True)
            log.info("building tiny base model %s (%d steps)", final.name, cfg.steps)
            _build_atomically(final, cfg, progress)
    return final


def held_out_accuracy(model_dir: str | Path, cfg: TinyConfig, n: int = 200) -> float:
    """Greedy accuracy on the first n test items of the model's arith variant."""
    from sustain.eval.generators.base import SamplingConfig
    from sustain.eval.generators.hf import HFGenerator

    task = cfg.task()
    items = task.load("test", limit=n)
    gen = HFGenerator(str(model_dir), device="cpu")
    outs = gen.generate([task.messages(it) for it in items], SamplingConfig(max_new_tokens=48, batch_size=64))
    grades = task.grade_many(items, [o.text for o in outs])
    return sum(g.success for g in grades) / len(grades)


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(prog="sustain tiny", description=__doc__.split("\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="model folder to create (must not exist)")
    where.add_argument("--cached", action="store_true",
                       help="build into the cache the demo and the tests read (nothing to do when it is there)")
    parser.add_argument("--steps", type=int, default=TinyConfig.steps)
    parser.add_argument("--instruction-rate", type=float, default=TinyConfig.instruction_rate)
    parser.add_argument("--seed", type=int, default=TinyConfig.seed)
    parser.add_argument("--ops", default=TinyConfig.ops, help="operations, e.g. '+' or '+-'")
    parser.add_argument("--digits", type=int, default=TinyConfig.digits)
    parser.add_argument("--no-eval", action="store_true", help="skip the held-out accuracy check")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    options = dict(steps=args.steps, seed=args.seed, instruction_rate=args.instruction_rate, ops=args.ops,
                   digits=args.digits)
    if not 1 <= args.steps <= MAX_STEPS:  # a typo'd step count would train for days, then fill the disk
        raise UserError(f"--steps must be 1 to {MAX_STEPS}, got {args.steps}", "pass e.g. --steps 1000 (the default)")
    cfg = TinyConfig.from_options(**options)
    if args.cached:  # the tests check its accuracy (tests/test_tiny_model.py)
        print(ensure_tiny_base(cache_dir(), progress=True, **options))
        return 0
    out = Path(args.out)
    if out.exists():
        raise UserError(f"{out} already exists", "choose another --out or delete that folder")
    _build_atomically(out.resolve(), cfg, progress=True)
    info = json.loads((out / "tiny_build.json").read_text())
    if not args.no_eval:
        info["held_out_accuracy_200"] = held_out_accuracy(out, cfg)
        (out / "tiny_build.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps({k: v for k, v in info.items() if k != "config"}))
    return 0


if __name__ == "__main__":
    sys.exit(run_entry(main))
