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
RELEVANT_GAIN = 1  # a judgement with at least this gain counts as relevant (ir_measures' rel threshold)


def relevant_queries(qrels: Qrels) -> list[str]:
    """The judged queries that have at least one relevant document: the ones any metric can evaluate."""
    return [q for q, judged in qrels.items() if any(g >= RELEVANT_GAIN for g in judged.values())]


class DatasetError(ValueError):
    """A collection that cannot be graded as it is; the message is one line naming the file and what to do."""


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
    qrels_layout: str = "generated"  # how the judgements were read: a key of graders.datasets.qrels.LAYOUTS

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
