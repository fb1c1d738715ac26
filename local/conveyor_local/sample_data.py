"""Deterministic MovieLens-style sample files for the demo and the tests.

`movielens_files(seed)` returns {relative key: bytes} for three datasets (movies, ratings, tags)
in the MovieLens CSV layouts, including the awkward cases real drops contain: nested folders,
spaces and non-ASCII characters in keys, quoted titles with commas.
"""

from __future__ import annotations

import csv
import io
import random

GENRES = [
    "Action",
    "Adventure",
    "Animation",
    "Children",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
]
WORDS = [
    "Night",
    "River",
    "Return",
    "Last",
    "Summer",
    "City",
    "Ghost",
    "Heart",
    "Storm",
    "Empire",
    "Amélie",
    "Straße",
    "Déjà",
    "Kiss",
    "Shadow",
    "Garden",
    "Journey",
    "Machine",
    "Star",
    "Winter",
]
TAGS = [
    "classic",
    "dark comedy",
    "twist ending",
    "visually stunning",
    "slow",
    "based on a book",
    "atmospheric",
    "quirky",
    "cult film",
    "Oscar (Best Picture)",
]
BASE_TIMESTAMP = 1_700_000_000  # fixed, so files are identical for a seed


def _csv(header: list[str], rows: list[list]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def movielens_files(
    seed: int = 42, movies: int = 200, users: int = 50, ratings: int = 2_000
) -> dict[str, bytes]:
    rng = random.Random(seed)
    movie_rows = []
    for movie_id in range(1, movies + 1):
        title = " ".join(rng.sample(WORDS, rng.randint(1, 3)))
        if rng.random() < 0.1:
            title += ", The"
        genres = "|".join(sorted(rng.sample(GENRES, rng.randint(1, 3))))
        movie_rows.append([movie_id, f"{title} ({rng.randint(1950, 2024)})", genres])
    rating_rows = sorted(
        [
            [
                rng.randint(1, users),
                rng.randint(1, movies),
                rng.choice([0.5 * i for i in range(1, 11)]),
                BASE_TIMESTAMP + rng.randint(0, 86_400 * 365),
            ]
            for _ in range(ratings)
        ]
    )
    tag_rows = [
        [
            rng.randint(1, users),
            rng.randint(1, movies),
            rng.choice(TAGS),
            BASE_TIMESTAMP + rng.randint(0, 86_400 * 365),
        ]
        for _ in range(ratings // 10)
    ]
    half = len(rating_rows) // 2
    return {
        "movielens/movies/movies.csv": _csv(["movieId", "title", "genres"], movie_rows),
        "movielens/movies/links/links.csv": _csv(
            ["movieId", "imdbId", "tmdbId"],
            [[m[0], f"{rng.randint(1, 9_999_999):07d}", rng.randint(1, 999_999)] for m in movie_rows],
        ),
        "movielens/ratings/part 1/ratings-000.csv": _csv(
            ["userId", "movieId", "rating", "timestamp"], rating_rows[:half]
        ),
        "movielens/ratings/part 2/ratings-001.csv": _csv(
            ["userId", "movieId", "rating", "timestamp"], rating_rows[half:]
        ),
        "movielens/tags/tags – Zoë's picks.csv": _csv(["userId", "movieId", "tag", "timestamp"], tag_rows),
    }


def upload(s3_client, bucket: str, files: dict[str, bytes]) -> None:
    for key, body in files.items():
        s3_client.put_object(
            Bucket=bucket,
            Key=key,
            Body=body,
            ContentType="text/csv",
            Metadata={"source-system": "movielens-sample"},
        )
