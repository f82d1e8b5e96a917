"""Text analysis shared by the lexical retrievers and the answer composer.

- `tokenize(text)`: lower-cased alphanumeric words with English stop words removed (the lab's
  task 3.1 contract); product codes such as "AX-420" or "v2.1" also yield the joined code
  ("ax-420", "v2.1") next to their parts, so both "AX-420" and "ax 420" match.
- `stem(word)` / `analyze(text)`: the Porter (1980) stemmer on top of `tokenize`, for BM25
  ("flows", "flowing" -> "flow"); pure Python, memoised, so no extra dependency.
- `sentences(text)`: a rule-based sentence splitter that survives lower-case text
  (Cranfield), decimals and common abbreviations.
"""
from __future__ import annotations

import re
from functools import lru_cache

# A standard English stop list (NLTK-sized): function words that carry no topic.
STOP_WORDS: frozenset[str] = frozenset(
    """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has
    have having he her here hers herself him himself his how i if in into is it its itself just me
    more most my myself no nor not now of off on once only or other our ours ourselves out over own
    same she should so some such than that the their theirs them themselves then there these they
    this those through to too under until up very was we were what when where which while who whom
    why will with would you your yours yourself yourselves also may might must shall can't cannot
    etc""".split()  # noqa: SIM905
)

_WORD = re.compile(r"[a-z0-9]+(?:[-./][a-z0-9]+)*")
_PART = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """Lower-cased alphanumeric tokens without stop words; "ax-420" gives "ax-420", "ax", "420"."""
    if not isinstance(text, str):
        raise TypeError(f"tokenize expects a str, got {type(text).__name__}")
    out: list[str] = []
    for match in _WORD.finditer(text.lower()):
        word = match.group()
        parts = _PART.findall(word)
        if len(parts) > 1 and any(c.isdigit() for c in word):
            out.append(word)  # a code: keep it whole as well as in parts
        out.extend(p for p in parts if p not in STOP_WORDS)
    return out


# ---------------------------------------------------------------- Porter stemmer
def _cons(w: str, i: int) -> bool:
    c = w[i]
    if c in "aeiou":
        return False
    if c == "y":
        return i == 0 or not _cons(w, i - 1)
    return True


def _measure(stem: str) -> int:
    """m in [C](VC)^m[V]."""
    m, i, n = 0, 0, len(stem)
    while i < n and _cons(stem, i):
        i += 1
    while i < n:
        while i < n and not _cons(stem, i):
            i += 1
        if i >= n:
            break
        while i < n and _cons(stem, i):
            i += 1
        m += 1
    return m


def _has_vowel(stem: str) -> bool:
    return any(not _cons(stem, i) for i in range(len(stem)))


def _double_cons(w: str) -> bool:
    return len(w) >= 2 and w[-1] == w[-2] and _cons(w, len(w) - 1)


def _cvc(w: str) -> bool:
    n = len(w)
    return n >= 3 and _cons(w, n - 3) and not _cons(w, n - 2) and _cons(w, n - 1) and w[-1] not in "wxy"


_STEP2 = sorted(
    {"ational": "ate", "tional": "tion", "enci": "ence", "anci": "ance", "izer": "ize", "bli": "ble",
     "alli": "al", "entli": "ent", "eli": "e", "ousli": "ous", "ization": "ize", "ation": "ate", "ator": "ate",
     "alism": "al", "iveness": "ive", "fulness": "ful", "ousness": "ous", "aliti": "al", "iviti": "ive",
     "biliti": "ble", "logi": "log"}.items(), key=lambda kv: -len(kv[0]))
_STEP3 = sorted({"icate": "ic", "ative": "", "alize": "al", "iciti": "ic", "ical": "ic", "ful": "", "ness": ""}.items(),
                key=lambda kv: -len(kv[0]))
_STEP4_SUFFIXES = "al ance ence er ic able ible ant ement ment ent ion ou ism ate iti ous ive ize"
_STEP4 = sorted(_STEP4_SUFFIXES.split(), key=len,
                reverse=True)


def _replace(w: str, rules: list[tuple[str, str]], min_m: int) -> str:
    for suffix, repl in rules:
        if w.endswith(suffix):
            stem = w[: -len(suffix)]
            return stem + repl if _measure(stem) > min_m - 1 else w
    return w


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """Porter stemmer (the original algorithm, with the common 'bli'/'logi' amendments)."""
    w = word
    if len(w) <= 2 or not w.isalpha():
        return w
    # step 1a
    if w.endswith(("sses", "ies")):
        w = w[:-2]
    elif w.endswith("s") and not w.endswith("ss"):
        w = w[:-1]
    # step 1b
    if w.endswith("eed"):
        if _measure(w[:-3]) > 0:
            w = w[:-1]
    else:
        for suffix in ("ed", "ing"):
            if w.endswith(suffix) and _has_vowel(w[: -len(suffix)]):
                w = w[: -len(suffix)]
                if w.endswith(("at", "bl", "iz")):
                    w += "e"
                elif _double_cons(w) and w[-1] not in "lsz":
                    w = w[:-1]
                elif _measure(w) == 1 and _cvc(w):
                    w += "e"
                break
    # step 1c
    if w.endswith("y") and _has_vowel(w[:-1]):
        w = w[:-1] + "i"
    w = _replace(w, _STEP2, 1)
    w = _replace(w, _STEP3, 1)
    # step 4
    for suffix in _STEP4:
        if w.endswith(suffix):
            s = w[: -len(suffix)]
            if _measure(s) > 1 and (suffix != "ion" or s.endswith(("s", "t"))):
                w = s
            break
    # step 5
    if w.endswith("e"):
        s = w[:-1]
        m = _measure(s)
        if m > 1 or (m == 1 and not _cvc(s)):
            w = s
    if w.endswith("ll") and _measure(w) > 1:
        w = w[:-1]
    return w


def analyze(text: str) -> list[str]:
    """`tokenize` + Porter stemming: the analyzer the reference BM25 indexes and queries with."""
    return [stem(t) for t in tokenize(text)]


# ---------------------------------------------------------------- sentences
_BOUNDARY = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n\s*\n")
_ABBREVIATIONS = "e.g i.e etc vs cf al fig eq no dr mr mrs ms st approx ref refs ca inc ltd co"
_ABBREV = frozenset(_ABBREVIATIONS.split())


def sentences(text: str) -> list[str]:
    """Split text into sentences; keeps "e.g.", "Fig. 3" and "3.5" inside their sentence."""
    pieces = [p.strip() for p in _BOUNDARY.split(text) if p and p.strip()]
    out: list[str] = []
    for piece in pieces:
        if out:
            words = out[-1].rstrip(".").split()  # empty for a lone "." (Cranfield's abstracts have " . ")
            last = words[-1].lower() if out[-1].endswith(".") and words else ""
            if last in _ABBREV or (len(last) == 1 and last.isalpha()):
                out[-1] = f"{out[-1]} {piece}"
                continue
        out.append(piece)
    return out
