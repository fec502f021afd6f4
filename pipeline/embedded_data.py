"""Generates the embedded default dataset: drawn covers in the books_data.csv format."""

from __future__ import annotations

import colorsys
import csv
import os
import random

from PIL import Image, ImageDraw

from bookcover import constants
from pipeline import configs

CATEGORY_NAMES = (
    "Fiction",
    "Juvenile Fiction",
    "Biography & Autobiography",
    "History",
    "Religion",
    "Business & Economics",
    "Computers",
    "Cooking",
    "Health & Fitness",
    "Science",
    "Poetry",
    "Travel",
    "Art",
    "Music",
)
CSV_COLUMNS = (
    "Title",
    "description",
    "authors",
    "image",
    "previewLink",
    "publisher",
    "publishedDate",
    "infoLink",
    "categories",
    "ratingsCount",
)
MOTIFS = ("hstripes", "vstripes", "circles", "diagonal", "grid", "triangles")
COVER_SIZE = (120, 180)  # larger than the model's input, so ingestion really resizes


def draw_cover(category_index: int, rng: random.Random) -> Image.Image:
    """A cover whose hue and motif identify the category, with per-book variation."""
    hue = (category_index * 0.61803) % 1.0 + rng.uniform(-0.03, 0.03)
    light = 0.35 if category_index % 2 else 0.6
    background = _rgb(hue, light + rng.uniform(-0.08, 0.08), 0.65)
    ink = _rgb(hue + 0.5, 1.0 - light, 0.8)
    image = Image.new("RGB", COVER_SIZE, background)
    draw = ImageDraw.Draw(image)
    width, height = COVER_SIZE
    motif = MOTIFS[category_index % len(MOTIFS)]
    step = rng.randint(14, 20)
    offset = rng.randint(0, step)
    if motif == "hstripes":
        for y in range(offset, height, step):
            draw.rectangle([0, y, width, y + step // 3], fill=ink)
    elif motif == "vstripes":
        for x in range(offset, width, step):
            draw.rectangle([x, 0, x + step // 3, height], fill=ink)
    elif motif == "circles":
        for _ in range(rng.randint(4, 7)):
            cx, cy, r = rng.randint(0, width), rng.randint(0, height), rng.randint(10, 24)
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=ink, width=4)
    elif motif == "diagonal":
        for d in range(-height + offset, width, step):
            draw.line([d, 0, d + height, height], fill=ink, width=5)
    elif motif == "grid":
        for x in range(offset, width, step):
            draw.line([x, 0, x, height], fill=ink, width=2)
        for y in range(offset, height, step):
            draw.line([0, y, width, y], fill=ink, width=2)
    else:
        for _ in range(rng.randint(3, 6)):
            x, y, s = rng.randint(0, width), rng.randint(0, height), rng.randint(14, 30)
            draw.polygon([(x, y - s), (x - s, y + s), (x + s, y + s)], fill=ink)
    # A title band, as on real covers, in a colour unrelated to the category.
    top = rng.randint(10, height // 2)
    band = tuple(rng.randint(0, 255) for _ in range(3))
    draw.rectangle([8, top, width - 8, top + rng.randint(18, 34)], fill=band)
    return image


def _rgb(hue: float, lightness: float, saturation: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hls_to_rgb(hue % 1.0, min(max(lightness, 0.05), 0.95), saturation)
    return int(r * 255), int(g * 255), int(b * 255)


def generate(
    out_dir: str,
    categories: int = configs.EMBEDDED_CATEGORIES,
    per_category: int = configs.EMBEDDED_PER_CATEGORY,
    seed: int = constants.SAMPLE_SEED,
    image_url_prefix: str | None = None,
) -> str:
    """Writes covers and books_data.csv under `out_dir`; returns the CSV path.

    Two extra, smaller categories and a few unusable rows are added so that the
    selection and the row checks do real work. With `image_url_prefix` the
    `image` column holds URLs under it (for serving over HTTP); otherwise paths.
    """
    if categories + 2 > len(CATEGORY_NAMES):
        raise ValueError(f"at most {len(CATEGORY_NAMES) - 2} embedded categories")
    rng = random.Random(seed)
    rows = []
    for index in range(categories + 2):
        name = CATEGORY_NAMES[index]
        count = per_category if index < categories else max(2, per_category // 4)
        folder = os.path.join(out_dir, "covers", f"c{index:02d}")
        os.makedirs(folder, exist_ok=True)
        for i in range(count):
            file_name = f"{i:04d}.png" if i % 10 == 9 else f"{i:04d}.jpg"
            path = os.path.join(folder, file_name)
            cover = draw_cover(index, rng)
            cover.save(path, quality=92) if path.endswith(".jpg") else cover.save(path)
            relative = f"covers/c{index:02d}/{file_name}"
            image = f"{image_url_prefix}/{relative}" if image_url_prefix else path
            rows.append(_row(f"{name} volume {i + 1}", f"Author {index}-{i % 7}", image, name))
    rows.append(_row("A book without a cover", "Nobody", "", CATEGORY_NAMES[0]))
    rows.append(_row("A book without a category", "Nobody", rows[0]["image"], ""))
    csv_path = os.path.join(out_dir, "books_data.csv")
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return csv_path


def _row(title: str, author: str, image: str, category: str) -> dict:
    return {
        "Title": title,
        "description": f"A generated description of {title},\nover two lines.",
        "authors": repr([author]),
        "image": image,
        "categories": repr([category]) if category else "",
        "publisher": "bookcover",
        "publishedDate": "2026",
        "previewLink": "",
        "infoLink": "",
        "ratingsCount": "",
    }
