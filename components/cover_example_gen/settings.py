"""Settings of one CoverExampleGen run, passed to the executor as a JSON exec property."""

from __future__ import annotations

import dataclasses

from components.covers import FetchConfig
from pipeline import configs


@dataclasses.dataclass(frozen=True)
class IngestSettings:
    top_k: int | None = configs.NUM_CATEGORIES
    min_books: int | None = None
    per_class: int | None = configs.PER_CLASS
    balance: bool = configs.BALANCE_CLASSES
    seed: int = configs.SAMPLE_SEED
    max_failure_share: float = configs.MAX_FAILURE_SHARE
    cache_dir: str = ""
    fetch: FetchConfig = dataclasses.field(default_factory=FetchConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> IngestSettings:
        data = dict(data)
        data["fetch"] = FetchConfig(**data.get("fetch", {}))
        return cls(**data)
