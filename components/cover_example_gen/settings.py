"""Settings of one CoverExampleGen run, passed to the executor as a JSON exec property."""

from __future__ import annotations

import dataclasses

from bookcover import constants
from bookcover.downloader import FetchConfig
from bookcover.settings import known_fields


@dataclasses.dataclass(frozen=True)
class IngestSettings:
    """Which categories to keep, how many covers of each, and how to fetch them."""

    top_k: int | None = constants.NUM_CATEGORIES
    min_books: int | None = None
    per_class: int | None = constants.PER_CLASS
    balance: bool = constants.BALANCE_CLASSES
    seed: int = constants.SAMPLE_SEED
    max_failure_share: float = constants.MAX_FAILURE_SHARE
    cache_dir: str = ""
    # Also write the pretraining split (constants.PRETRAIN_SPLIT): set by the pipeline
    # when the Trainer pretrains (TrainingSettings.pretrain_epochs).
    pretrain: bool = False
    pretrain_min_books: int = constants.PRETRAIN_MIN_BOOKS
    pretrain_max_categories: int = constants.PRETRAIN_MAX_CATEGORIES
    fetch: FetchConfig = dataclasses.field(default_factory=FetchConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> IngestSettings:
        """Keys left out take their defaults; an unknown key is a ValueError naming it."""
        data = known_fields(cls, data, "ingest settings")
        data["fetch"] = FetchConfig(**known_fields(FetchConfig, data.get("fetch", {}), "fetch"))
        return cls(**data)
