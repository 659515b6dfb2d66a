"""Near-duplicate grouping: texts from one template (a sentence with a place name swapped, a
stock sentence appended) belong to one group, and a group never spans two splits."""
from __future__ import annotations

import re
from collections import Counter, defaultdict

from configs import normalize_text

SHINGLE = 5
_PROPER_NAME = re.compile(r"\b[A-Z][A-Za-z]+\b")
_DIGITS = re.compile(r"[0-9\u0966-\u096F]+")  # ASCII and Devanagari digits


def template_key(text: str) -> str:
    """The text with what varies inside a template family masked: Latin proper names, numbers."""
    masked = _DIGITS.sub("0", _PROPER_NAME.sub("#", text))
    return normalize_text(masked)


def shingles(text: str) -> frozenset[str]:
    key = template_key(text)
    if len(key) <= SHINGLE:
        return frozenset([key])
    return frozenset(key[i:i + SHINGLE] for i in range(len(key) - SHINGLE + 1))


def similarity(shared: int, a: int, b: int) -> float:
    """Containment (shared / smaller set): a template with a stock sentence appended still
    matches its bare form, which plain Jaccard would miss."""
    return shared / max(1, min(a, b))


class NearDuplicateIndex:
    """Shingle index of known texts; `matches(text)` are the indices of near-duplicates."""

    def __init__(self, texts: list[str], threshold: float):
        self.threshold = threshold
        self.sizes: list[int] = []
        self.postings: dict[str, list[int]] = defaultdict(list)
        for text in texts:
            self.add(text)

    def add(self, text: str) -> int:
        index = len(self.sizes)
        grams = shingles(text)
        self.sizes.append(len(grams))
        for gram in grams:
            self.postings[gram].append(index)
        return index

    def matches(self, text: str) -> list[int]:
        grams = shingles(text)
        shared = Counter(i for gram in grams for i in self.postings.get(gram, ()))
        return [i for i, n in shared.items() if similarity(n, len(grams), self.sizes[i]) >= self.threshold]


class UnionFind:
    """Connected components of linked items 0..n-1 (path halving)."""

    def __init__(self, n: int):
        self.parent = list(range(n))

    def root(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        self.parent[self.root(i)] = self.root(j)

    def component_ids(self) -> list[int]:
        """0, 1, 2 ... per item, numbered in order of each component's first item."""
        roots = [self.root(i) for i in range(len(self.parent))]
        ids = {r: n for n, r in enumerate(dict.fromkeys(roots))}
        return [ids[r] for r in roots]


def group_new_texts(known: list[str], new: list[str], threshold: float) -> tuple[list[int], list[set[int]]]:
    """Group the new texts among themselves (connected components of near-duplicate links).

    Returns (group id of each new text, for each group the indices of the known texts it
    touches)."""
    index = NearDuplicateIndex(known, threshold)
    families = UnionFind(len(new))
    touched_by_text: list[set[int]] = []
    for position, text in enumerate(new):
        found = index.matches(text)
        touched_by_text.append({i for i in found if i < len(known)})
        for i in found:
            if i >= len(known):
                families.union(position, i - len(known))
        index.add(text)

    group_ids = families.component_ids()
    touched: list[set[int]] = [set() for _ in set(group_ids)]
    for group, known_hits in zip(group_ids, touched_by_text):
        touched[group] |= known_hits
    return group_ids, touched
