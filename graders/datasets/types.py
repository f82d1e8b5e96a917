"""The in-memory shape every retrieval dataset is loaded into, whatever its source format."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Doc:
    id: str
    title: str
    text: str

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "title": self.title, "text": self.text}


# qrels: query id -> doc id -> graded gain (0 = judged not relevant, higher = more relevant)
Qrels = dict[str, dict[str, int]]


@dataclass
class Split:
    """Queries and their judgements for one split ("dev" is public, "test" is hidden)."""

    name: str
    queries: dict[str, str]
    qrels: Qrels


@dataclass
class Dataset:
    name: str
    docs: list[Doc]
    splits: dict[str, Split] = field(default_factory=dict)
    description: str = ""

    def split(self, name: str) -> Split:
        if name == "all":
            queries: dict[str, str] = {}
            qrels: Qrels = {}
            for s in self.splits.values():
                queries.update(s.queries)
                qrels.update(s.qrels)
            return Split("all", queries, qrels)
        if name not in self.splits:
            raise KeyError(f"dataset {self.name!r} has no split {name!r}; it has {sorted(self.splits)}")
        return self.splits[name]

    def doc_map(self) -> dict[str, Doc]:
        return {d.id: d for d in self.docs}
