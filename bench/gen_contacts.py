"""Deterministic contacts CSV generator: the same seed and row count give the same bytes.

python bench/gen_contacts.py ROWS OUT.csv
"""

from __future__ import annotations

import csv
import random
import sys
import uuid
from pathlib import Path

COLUMNS = (
    "uuid",
    "first_name",
    "last_name",
    "email",
    "title",
    "seniority",
    "department",
    "company_id",
    "phone",
    "country",
    "state",
    "city",
    "linkedin_url",
    "email_verified_at",
)
FIRST = (
    "Ada",
    "Grace",
    "Alan",
    "Linus",
    "Barbara",
    "Ken",
    "Margaret",
    "Dennis",
    "Edsger",
    "Frances",
)
LAST = ("Lovelace", "Hopper", "Turing", "Torvalds", "Liskov", "Thompson", "Hamilton", "Ritchie")
TITLES = ("Engineer", "Manager", "Director", "VP Sales", "CTO", "Analyst", "Designer", "Recruiter")
SENIORITY = ("junior", "mid", "senior", "lead", "executive")
DEPARTMENTS = ("engineering", "sales", "marketing", "finance", "hr", "operations")
PLACES = (
    ("US", "CA", "San Francisco"),
    ("US", "NY", "New York"),
    ("DE", "BE", "Berlin"),
    ("FR", "IDF", "Paris"),
    ("IN", "KA", "Bengaluru"),
    ("BR", "SP", "Sao Paulo"),
)


def rows(count: int, seed: int = 42):
    rng = random.Random(seed)
    companies = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(1000)]
    for i in range(count):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        country, state, city = rng.choice(PLACES)
        verified = ""
        if i % 3:
            verified = (
                f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{i % 59:02d}Z"
            )
        yield (
            str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            first,
            last,
            f"{first.lower()}.{last.lower()}{i}@example.com",
            rng.choice(TITLES),
            rng.choice(SENIORITY),
            rng.choice(DEPARTMENTS),
            rng.choice(companies),
            f"+1-555-{i % 10_000_000:07d}",
            country,
            state,
            city,
            f"https://www.linkedin.com/in/{first.lower()}-{last.lower()}-{i}",
            verified,
        )


def generate(count: int, out: Path, seed: int = 42) -> Path:
    """Write the file once; reuse it when it already exists with the same size marker."""
    done = out.with_suffix(out.suffix + ".done")
    if out.exists() and done.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        writer.writerows(rows(count, seed))
    tmp.rename(out)
    done.write_text(str(count))
    return out


if __name__ == "__main__":
    generate(int(sys.argv[1]), Path(sys.argv[2]))
