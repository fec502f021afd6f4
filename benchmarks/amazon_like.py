"""A full-size stand-in for the Amazon books_data.csv, and its covers drawn on request on 127.0.0.1.

    python -m benchmarks.amazon_like write --out /tmp/amazon/books_data.csv [--rows 212404]
    python -m benchmarks.amazon_like serve [--port 8766]

The real file (212,404 rows, about 180 MB, more than 7,000 categories) cannot be
fetched here, so this one copies its shape: the columns of
tests/data/books_data_sample.csv (100 real rows), that sample's shares of rows
without a category (23%), without an image URL (29%) and without either (16%),
its description lengths (35% empty, the rest drawn from the sample's own
lengths), and a category table whose 12 largest categories keep more than 2,200
books with a cover each (the seed's 12 x 2,200) above a long tail of 7,200 small
ones. Every image URL points at the server, which draws a deterministic cover
whose hue and motif follow the book's category (pipeline/embedded_data.draw_cover),
so the covers are learnable and nothing is stored.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import http.server
import io
import itertools
import os
import random
import sys
import urllib.parse

from pipeline import embedded_data

ROWS = 212_404  # the real file's
DEFAULT_PORT = 8766  # beside the development set's 8765
SAMPLE_CSV = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "books_data_sample.csv")
# The real file's largest categories, largest first, with relative sizes shaped like
# its head: Fiction about 2.5 times the next, the 12th just above the seed's 2,200
# covers once a sixth of its rows lose their image URL.
HEAD_CATEGORIES = (
    ("Fiction", 23_400),
    ("Religion", 9_400),
    ("History", 9_300),
    ("Juvenile Fiction", 6_600),
    ("Biography & Autobiography", 6_300),
    ("Business & Economics", 5_600),
    ("Computers", 4_300),
    ("Social Science", 3_800),
    ("Juvenile Nonfiction", 3_400),
    ("Science", 3_200),
    ("Education", 3_000),
    ("Cooking", 2_900),
)
TAIL_CATEGORIES = 7_200
TAIL_BOOKS = 82_000  # about half of the categorised rows lie outside the head
TAIL_OFFSET = 30  # Zipf 1/(rank + 30): the tail's largest ~480 books, its smallest 2
NO_CATEGORY_SHARE = 0.23
NO_IMAGE_GIVEN_NO_CATEGORY = 0.70  # 16 of the sample's 23 uncategorised rows
NO_IMAGE_GIVEN_CATEGORY = 0.17  # 13 of its 77 categorised rows
WORDS = (
    "the of and a in to is was for on with as by his at from that an be this which "
    "book story life world new history guide war love family time man woman years "
    "great american first journey secret last house city night children art music "
    "god church business science garden cooking home travel poems letters volume"
).split()


def category_table(rows: int = ROWS) -> list[tuple[str, float]]:
    """(name, weight) for every category, head then tail; weights sum to the categorised
    rows of a file of `rows` rows."""
    scale = rows / ROWS
    tail = [1 / (rank + TAIL_OFFSET) for rank in range(TAIL_CATEGORIES)]
    tail_scale = TAIL_BOOKS * scale / sum(tail)
    return [(name, count * scale) for name, count in HEAD_CATEGORIES] + [
        (f"Subject {rank:04d}", w * tail_scale) for rank, w in enumerate(tail)
    ]


def sample_description_lengths(path: str = SAMPLE_CSV) -> list[int]:
    with open(path, newline="", encoding="utf-8") as f:
        return [len(r["description"]) for r in csv.DictReader(f)]


def cover_url(base_url: str, row: int, category_index: int) -> str:
    """A Google-Books-like URL whose id names the row and the category the cover shows."""
    return (
        f"{base_url}/books/content?id=R{row:07d}C{category_index:04d}"
        "&printsec=frontcover&img=1&zoom=1&source=gbs_api"
    )


def write_catalogue(path: str, rows: int, base_url: str, seed: int = 0) -> dict:
    """Writes the CSV; returns its shape (rows, categorised, with image, categories)."""
    rng = random.Random(seed)
    table = category_table(rows)
    names = [name for name, _ in table]
    cumulative = list(itertools.accumulate(w for _, w in table))
    lengths = sample_description_lengths()
    shape = {"rows": rows, "with_category": 0, "with_image": 0, "with_both": 0}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=embedded_data.CSV_COLUMNS)
        writer.writeheader()
        for row in range(1, rows + 1):
            has_category = rng.random() >= NO_CATEGORY_SHARE
            no_image = NO_IMAGE_GIVEN_CATEGORY if has_category else NO_IMAGE_GIVEN_NO_CATEGORY
            has_image = rng.random() >= no_image
            index = bisect.bisect(cumulative, rng.random() * cumulative[-1])
            index = min(index, len(names) - 1)
            writer.writerow(
                _row(
                    rng,
                    row,
                    names[index] if has_category else "",
                    index,
                    has_image,
                    base_url,
                    lengths,
                )
            )
            shape["with_category"] += has_category
            shape["with_image"] += has_image
            shape["with_both"] += has_category and has_image
    shape["categories"] = len(table)
    shape["bytes"] = os.path.getsize(path)
    return shape


def _row(rng, row, category, index, has_image, base_url, lengths) -> dict:
    title = " ".join(rng.choices(WORDS, k=rng.randint(2, 9))).title()
    if rng.random() < 0.1:  # real titles carry commas and quotes, which the CSV quotes
        title = f'{title}, "{rng.choice(WORDS)}" edition'
    length = rng.choice(lengths)
    description = _text(rng, length) if length else ""
    book_id = f"R{row:07d}C{index:04d}"
    query = urllib.parse.quote_plus(title)
    authors = [f"{rng.choice(WORDS).title()} {rng.choice(WORDS).title()}"]
    return {
        "Title": title,
        "description": description,
        "authors": repr(authors) if rng.random() < 0.83 else "",
        "image": cover_url(base_url, row, index) if has_image else "",
        "previewLink": f"http://books.google.nl/books?id={book_id}&dq={query}&hl=&cd=1&source=gbs_api",
        "publisher": rng.choice(WORDS).title() + " Press" if rng.random() < 0.56 else "",
        "publishedDate": str(rng.randint(1850, 2022)) if rng.random() < 0.88 else "",
        "infoLink": f"http://books.google.nl/books?id={book_id}&dq={query}&hl=&source=gbs_api",
        "categories": repr([category]) if category else "",
        "ratingsCount": str(rng.randint(1, 500)) if rng.random() < 0.25 else "",
    }


def _text(rng: random.Random, length: int) -> str:
    words, size = [], 0
    while size < length:
        word = rng.choice(WORDS)
        words.append(word)
        size += len(word) + 1
    return " ".join(words)[:length]


def draw_cover_jpeg(book_id: str) -> bytes:
    """The cover of one URL id, the same on every request."""
    category_index = int(book_id.split("C", 1)[1])
    image = embedded_data.draw_cover(category_index, random.Random(book_id))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


class CoverHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the downloader pools connections
    # The headers and the body go out in two writes; with Nagle's algorithm the body
    # waits for the client's delayed ACK of the headers, 40 ms per cover on loopback,
    # which capped every client at about 16 connections / 40 ms. A CDN does not do that.
    disable_nagle_algorithm = True

    def do_GET(self):  # noqa: N802 - http.server's naming
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        try:
            body = draw_cover_jpeg(query["id"][0])
        except (KeyError, IndexError, ValueError):
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def serve(port: int) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), CoverHandler)
    server.daemon_threads = True
    print(f"serving drawn covers on http://127.0.0.1:{server.server_address[1]}/", flush=True)
    server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    write = commands.add_parser("write", help="write the CSV")
    write.add_argument("--out", required=True)
    write.add_argument("--rows", type=int, default=ROWS)
    write.add_argument("--seed", type=int, default=0)
    write.add_argument("--base-url", default=f"http://127.0.0.1:{DEFAULT_PORT}")
    server = commands.add_parser("serve", help="draw the covers on 127.0.0.1")
    server.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    if args.command == "write":
        print(write_catalogue(args.out, args.rows, args.base_url, args.seed))
    else:
        serve(args.port)


if __name__ == "__main__":
    main(sys.argv[1:])
