"""Date normalisation as translation: human-written dates in many languages -> ISO 8601.

Month and weekday names come from babel's CLDR data, so "27 novembre 2026",
"Friday, November 27, 2026" and "2026年11月27日" all map to "2026-11-27". Splits are drawn
from disjoint sets of calendar days, so the test split holds only dates never trained on.
"""

from __future__ import annotations

import datetime as dt
import random

from babel.dates import format_date

from attnlab.core.registry import Settings, register
from attnlab.data.loaders import check_loading
from attnlab.data.seq2seq import Pairs, PairsDataModule

# CLDR's own styles; "short" is left out because it writes two-digit years.
CLDR_STYLES = ("full", "long", "medium")
# Numeric layouts whose separator and year position tell the field order apart.
NUMERIC_PATTERNS = ("dd.MM.yyyy", "MM/dd/yyyy", "yyyy/MM/dd", "yyyy-MM-dd", "d.M.yyyy")
DEFAULT_LOCALES = ("en_US", "en_GB", "fr", "de", "es", "it", "pt", "nl", "ru", "zh", "ja")


NUMERIC_FRACTION = 0.25


def human_date(day: dt.date, locales: tuple[str, ...], rng: random.Random) -> str:
    """One written form of ``day``: a CLDR style of a random locale, or a numeric layout."""
    styles = NUMERIC_PATTERNS if rng.random() < NUMERIC_FRACTION else CLDR_STYLES
    return format_date(day, rng.choice(styles), locale=rng.choice(locales))


def make_date_pairs(
    sizes: dict[str, int],
    locales: tuple[str, ...] = DEFAULT_LOCALES,
    year_min: int = 1900,
    year_max: int = 2099,
    seed: int = 0,
) -> dict[str, Pairs]:
    """Sample ``sum(sizes)`` distinct days, deal them to the splits, write each one out."""
    rng = random.Random(seed)
    first, last = dt.date(year_min, 1, 1), dt.date(year_max, 12, 31)
    n_days = (last - first).days + 1
    total = sum(sizes.values())
    if total > n_days:
        raise ValueError(f"{total} examples need more than the {n_days} days in the year range")
    offsets = rng.sample(range(n_days), total)
    pairs: dict[str, Pairs] = {}
    start = 0
    for split, size in sizes.items():
        days = [first + dt.timedelta(days=o) for o in offsets[start : start + size]]
        pairs[split] = [(human_date(d, locales, rng), d.isoformat()) for d in days]
        start += size
    return pairs


def check_dates(c: Settings) -> None:
    """Sizes, a year range that holds train + val + test distinct days, CLDR locales."""
    from babel import Locale, UnknownLocaleError

    check_loading(c)
    if not 1 <= c.year_min <= c.year_max <= 9999:
        c.fail("year_max", f">= data.year_min={c.year_min}, at most 9999")
    n_days = (dt.date(c.year_max, 12, 31) - dt.date(c.year_min, 1, 1)).days + 1
    if c.n_train + c.n_val + c.n_test > n_days:
        c.fail("n_train", f"train+val+test <= {n_days} days in the year range")
    if not c.locales:
        c.fail("locales", "at least one CLDR locale")
    for locale in c.locales:
        try:
            Locale.parse(locale)
        except (UnknownLocaleError, ValueError):
            c.fail("locales", "a CLDR locale such as en_US, fr, zh", value=locale)


@register("data", "dates", check=check_dates)
class DateDataModule(PairsDataModule):
    """Human-written dates -> ISO dates, character level."""

    def __init__(
        self,
        n_train: int = 20000,
        n_val: int = 1000,
        n_test: int = 2000,
        locales: list[str] = DEFAULT_LOCALES,
        year_min: int = 1900,
        year_max: int = 2099,
        seed: int = 0,
        batch_size: int = 128,
        num_workers: int = 0,
    ):
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        self.sizes = {"train": n_train, "val": n_val, "test": n_test}
        self.locales = tuple(locales)
        self.year_min, self.year_max = year_min, year_max
        self.seed = seed

    def make_splits(self) -> dict[str, Pairs]:
        return make_date_pairs(self.sizes, self.locales, self.year_min, self.year_max, self.seed)
