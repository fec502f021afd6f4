"""CoverExampleGen: the custom ExampleGen that turns books_data.csv into cover TFRecords."""

from components.cover_example_gen.component import CategoryAnalysis, CoverExampleGen

__all__ = ["CategoryAnalysis", "CoverExampleGen"]
