"""Whole numbers written out in English words ("forty-two"), for checks that look for an answer in prose.

Used where a number may be spelled instead of written in digits: the failure classes (a constraint
such as "no digits" leads to "the answer is forty-two") and the soft-constraint leak check.
"""
from __future__ import annotations

ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen").split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"))


def _below_thousand(n: int, joiner: str) -> str:
    hundreds, rest = divmod(n, 100)
    words = [f"{ONES[hundreds]} hundred"] if hundreds else []
    if rest:
        tens, ones = divmod(rest, 10)
        part = ONES[rest] if rest < 20 else TENS[tens] + (f"-{ONES[ones]}" if ones else "")
        words.append(f"and {part}" if hundreds and joiner == "and" else part)
    return " ".join(words)


def spell(n: int, joiner: str = "") -> str:
    """'forty-two'; joiner='and' gives the British 'one hundred and five'."""
    if n < 0:
        return "minus " + spell(-n, joiner)
    if n == 0:
        return "zero"
    words = []
    for size, name in SCALES:
        if n >= size:
            words.append(f"{_below_thousand(n // size, joiner)} {name}")
            n %= size
    if n:
        words.append(_below_thousand(n, joiner))
    return " ".join(words)


def spelled_forms(value: str) -> set[str]:
    """Lower-case spelled forms of a whole number given as text ('1,200' -> {'one thousand two hundred', ...});
    empty for anything that is not a whole number below a trillion."""
    text = str(value).replace(",", "").strip()
    try:
        number = float(text)
    except ValueError:
        return set()
    if not number.is_integer() or abs(number) >= 10**12:
        return set()
    n = int(number)
    forms = {spell(n), spell(n, "and")}
    return forms | {f.replace("-", " ") for f in forms}
