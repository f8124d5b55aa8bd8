"""Generated near-duplicates: a message retold with the same meaning, to measure and calibrate
near-duplicate detection (``bench/semantic_codes.py``, ``models/train_codes.py``).

``near_duplicate(text, rng)`` -> (edited text, kind), one of:

- ``typos``: about 4% of the letters swapped with a neighbour, dropped, doubled or replaced;
- ``reorder``: the sentences (or, in one sentence, the clauses; or the two halves) in another order;
- ``paraphrase``: words replaced by synonyms from a small table, a few filler words dropped, the
  case and punctuation changed, a short lead-in added;
- ``mixed``: paraphrase, then typos.

Deterministic for a given ``numpy.random.Generator`` state.
"""

from __future__ import annotations

import re

import numpy as np

from rvqstream.models.code_model import numbers, numbers_agree

DISAGREE_FLOOR = 0.5      # scores below this are never near-duplicates: numbers go unchecked there

KINDS = ("typos", "reorder", "paraphrase", "mixed")

SYNONYMS = {
    "big": "large", "large": "big", "small": "little", "little": "small", "use": "employ", "uses": "employs",
    "used": "employed", "begin": "start", "start": "begin", "show": "display", "shows": "displays",
    "get": "obtain", "gets": "obtains", "make": "create", "makes": "creates", "help": "assist",
    "quick": "fast", "fast": "quick", "end": "finish", "ends": "finishes", "answer": "reply",
    "buy": "purchase", "need": "require", "needs": "requires", "about": "regarding", "also": "too",
    "error": "failure", "errors": "failures", "file": "document", "files": "documents", "run": "execute",
    "runs": "executes", "change": "modify", "changes": "modifies", "give": "provide", "gives": "provides",
    "so": "therefore", "but": "however", "many": "numerous", "often": "frequently", "easy": "simple",
    "hard": "difficult", "first": "initial", "last": "final", "find": "locate", "finds": "locates",
    "people": "persons", "man": "person", "said": "stated", "says": "states", "new": "fresh",
    "old": "aged", "before": "prior to", "after": "following", "like": "such as", "very": "really",
    "maybe": "perhaps", "kind": "sort", "way": "manner", "ways": "manners", "right": "correct",
}
FILLERS = {"the", "a", "an", "very", "really", "just", "that", "of", "to"}
LEADS = ("Note: ", "FYI, ", "Just to say: ", "Reminder - ", "Again: ", "Quick note: ")
_KEYS = "qwertyuiopasdfghjklzxcvbnm"


def typos(text: str, rng: np.random.Generator, rate: float = 0.04) -> str:
    chars = list(text)
    letters = [i for i, c in enumerate(chars) if c.isalpha()]
    if not letters:
        return text + "."
    n = max(1, int(len(letters) * rate))
    for i in sorted(rng.choice(letters, size=min(n, len(letters)), replace=False), reverse=True):
        op = rng.integers(4)
        if op == 0 and i + 1 < len(chars):
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        elif op == 1:
            del chars[i]
        elif op == 2:
            chars.insert(i, chars[i])
        else:
            chars[i] = _KEYS[rng.integers(len(_KEYS))]
    return "".join(chars)


def reorder(text: str, rng: np.random.Generator) -> str:
    parts = [p for p in re.split(r"(?<=[.!?])\s+", text.strip()) if p]
    sep = " "
    if len(parts) < 2:
        parts = [p.strip() for p in re.split(r"[,;:]\s+", text.strip()) if p.strip()]
        sep = ", "
    if len(parts) < 2:
        words = text.split()
        cut = max(1, len(words) // 2)
        parts, sep = [" ".join(words[:cut]), " ".join(words[cut:])], " "
    order = rng.permutation(len(parts))
    if (order == np.arange(len(parts))).all():
        order = np.roll(order, 1)
    return sep.join(parts[i] for i in order)


def paraphrase(text: str, rng: np.random.Generator) -> str:
    out = []
    for w in text.split(" "):
        core = w.strip(".,;:!?()\"'").lower()
        if core in FILLERS and rng.random() < 0.35:
            continue
        if core in SYNONYMS and rng.random() < 0.8:
            w = w.lower().replace(core, SYNONYMS[core])
        out.append(w)
    s = " ".join(out)
    if rng.random() < 0.5:
        s = s.lower() if rng.random() < 0.5 else s.rstrip(".!?") + "!"
    return LEADS[rng.integers(len(LEADS))] + s


def near_duplicate(text: str, rng: np.random.Generator, kind: str | None = None) -> tuple[str, str]:
    """An edited copy of ``text`` with the same meaning, and the kind of edit (random if None)."""
    kind = kind or KINDS[rng.integers(len(KINDS))]
    if kind == "typos":
        return typos(text, rng), kind
    if kind == "reorder":
        return reorder(text, rng), kind
    if kind == "paraphrase":
        return paraphrase(text, rng), kind
    return typos(paraphrase(text, rng), rng), kind


def dedup_eval(originals: list[str], others: list[str], embed, stored_of, rng: np.random.Generator) -> dict:
    """Scores of near-duplicate detection against a database of ``originals``.

    Queries: an edited copy of each original (positives; ``near_duplicate``) and each of
    ``others`` (messages not in the database: negatives). ``embed(texts)`` -> float32 [N, D]
    queries; ``stored_of(texts)`` -> float32 [N, D], the database's vectors as stored. A pair whose
    numbers disagree (``numbers_agree``) scores -1, as the server does not flag it. Returns
    per query: ``best`` (the highest score), ``hit`` (a positive whose best match is its original),
    ``positive``, ``kind``."""
    edited = [near_duplicate(t, rng) for t in originals]
    db = stored_of(originals)
    queries = [e for e, _ in edited] + list(others)
    q = embed(queries)
    scores = q @ db.T
    # as the server: a match whose numbers disagree is no near-duplicate (checked where it could be)
    db_numbers = [numbers(t) for t in originals]
    for i, text in enumerate(queries):
        mine = numbers(text)
        for j in np.nonzero(scores[i] >= DISAGREE_FLOOR)[0]:
            if not numbers_agree(mine, db_numbers[j]):
                scores[i, j] = -1.0
    best, arg = scores.max(1), scores.argmax(1)
    n = len(originals)
    return {"best": best, "hit": np.concatenate([arg[:n] == np.arange(n), np.zeros(len(others), bool)]),
            "positive": np.arange(len(q)) < n, "kind": [k for _, k in edited] + ["negative"] * len(others)}


def precision_recall(ev: dict, threshold: float) -> tuple[float, float]:
    """Precision and recall of "near-duplicate of its best match" at ``threshold``: a flag is
    right when the query is a positive and its best match is its original."""
    flagged = ev["best"] >= threshold
    right = flagged & ev["hit"]
    return (right.sum() / max(flagged.sum(), 1)), right.sum() / ev["positive"].sum()


def threshold_for(ev: dict, precision: float) -> float:
    """The lowest threshold whose precision is at least ``precision`` (the most recall)."""
    best = None
    for t in np.unique(np.round(ev["best"], 4))[::-1]:
        if precision_recall(ev, float(t))[0] >= precision:
            best = float(t)
    return best if best is not None else float(ev["best"].max() + 1e-4)
