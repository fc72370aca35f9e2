"""Entity values for the synthetic traces, split once and for all into a training and a held-out part.

A value is held out when a stable hash of it falls in one bucket of ``HOLD_OUT``: the split is the
same on every machine and in every run, so the evaluation's cities, numbers, file names and search
words never appear in a training request.
"""

from __future__ import annotations

import random
import zlib
from functools import lru_cache
from zoneinfo import available_timezones

HOLD_OUT = 8  # one value in eight is held out


def held_out(value: object) -> bool:
    return zlib.crc32(str(value).lower().encode()) % HOLD_OUT == 0


def pick(rng: random.Random, values: list, heldout: bool):
    """A value from ``values`` on the requested side of the split."""
    pool = [v for v in values if held_out(v) == heldout]
    return rng.choice(pool)


@lru_cache(maxsize=1)
def cities() -> list[str]:
    """Places the time tools accept by name: the last part of IANA zones, spaces for underscores."""
    out = set()
    for zone in available_timezones():
        area, _, place = zone.partition("/")
        if area in {"Europe", "Asia", "America", "Africa", "Australia", "Pacific", "Atlantic", "Indian"} \
                and place and "/" not in place and not place.startswith(("GMT", "Etc")):
            out.add(place.replace("_", " "))
    return sorted(out)


_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "kr", "st",
           "tr", "pl", "gr", "sh", "ch", "th", "dr", "fl", "sk", "h", "j", "w", "y"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ou", "ea", "io"]
_CODAS = ["", "", "", "n", "r", "s", "l", "m", "x", "k", "nd", "st"]


def pseudo_word(rng: random.Random, syllables: tuple[int, int] = (2, 3)) -> str:
    """A pronounceable made-up word: names that no list (and no training set) can cover."""
    n = rng.randint(*syllables)
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(n)) + rng.choice(_CODAS)


def fresh_word(rng: random.Random, heldout: bool, syllables: tuple[int, int] = (2, 3)) -> str:
    while True:
        word = pseudo_word(rng, syllables)
        if held_out(word) == heldout:
            return word


def number(rng: random.Random, heldout: bool, lo: int, hi: int) -> int:
    while True:
        n = rng.randint(lo, hi)
        if held_out(n) == heldout:
            return n


def decimal(rng: random.Random, heldout: bool, lo: int, hi: int) -> float:
    while True:
        x = round(rng.uniform(lo, hi), rng.choice((1, 1, 2)))
        if x and held_out(x) == heldout:
            return x


EXTENSIONS = [".txt", ".md", ".csv", ".log", ".json", ".py", ".toml", ".ini"]

# Unit pairs the convert_units tool accepts, as a person would write them.
UNIT_PAIRS = [
    ("km", "miles"), ("miles", "km"), ("kg", "lb"), ("lb", "kg"), ("degC", "degF"), ("degF", "degC"),
    ("liters", "gallons"), ("gallons", "liters"), ("m", "ft"), ("ft", "m"), ("GB", "MiB"), ("MB", "KiB"),
    ("mph", "km/h"), ("km/h", "m/s"), ("inches", "cm"), ("cm", "inches"), ("oz", "g"), ("g", "oz"),
    ("hours", "minutes"), ("days", "hours"), ("minutes", "seconds"), ("yards", "m"), ("kJ", "kcal"),
    ("kcal", "kJ"), ("bar", "psi"), ("psi", "bar"), ("acres", "hectares"), ("hectares", "acres"),
    ("ml", "cups"), ("cups", "ml"), ("kWh", "MJ"), ("knots", "km/h"),
]
# Pairs that measure different things: the tool refuses them.
BAD_UNIT_PAIRS = [("kg", "km"), ("liters", "miles"), ("degC", "lb"), ("hours", "GB"), ("m", "kg"),
                  ("mph", "liters"), ("cups", "psi"), ("acres", "seconds")]

# Names as people's own folders have them, for trees that look like a real project or home folder
# (training mixes them with the made-up ones; the split by hash holds for them too).
REAL_STEMS = [
    "readme", "notes", "todo", "main", "app", "config", "settings", "setup", "utils", "helpers", "report",
    "data", "budget", "invoice", "changelog", "license", "index", "server", "client", "schema", "draft",
    "summary", "plan", "ideas", "recipes", "shopping", "journal", "backup", "requirements", "package",
    "model", "train", "engine", "test", "api", "views", "routes", "models", "cli", "tasks", "agenda",
    "minutes", "contacts", "expenses", "results", "output", "input", "sample", "example", "demo",
    "style", "layout", "script", "build", "deploy", "docker", "notebook", "analysis", "chapter",
    "letter", "resume", "thesis", "paper", "slides", "timeline", "roadmap", "issues", "errors",
    "access", "debug", "server_log", "metrics", "users", "orders", "sales", "inventory", "tracks",
    "photos", "playlist", "books", "movies", "weather", "trip", "packing", "garden", "workout",
]
REAL_UPPER = ["README", "LICENSE", "CHANGELOG", "TODO", "NOTES", "CONTRIBUTING", "AUTHORS"]
REAL_BARE = ["Makefile", "Dockerfile", "LICENSE", "Procfile", "Gemfile", "Vagrantfile"]
REAL_FOLDERS = [
    "src", "docs", "tests", "data", "notes", "scripts", "config", "assets", "lib", "examples", "tools",
    "build", "bin", "reports", "photos", "music", "drafts", "backup", "web", "api", "models", "logs",
    "templates", "static", "archive", "projects", "work", "school", "recipes", "invoices", "old",
    "tmp", "core", "utils", "bench", "public", "private", "downloads", "papers", "samples",
]
REAL_EXTENSIONS = EXTENSIONS + [".yaml", ".yml", ".sh", ".html", ".js", ".rs", ".cfg", ".c", ".h",
                                ".go", ".ts", ".xml", ".sql", ".rst", ".tsv", ".pdf"]
REAL_WORDS = [
    "TODO", "fix", "the", "import", "return", "error", "warning", "done", "milk", "eggs", "bread",
    "meeting", "Monday", "Friday", "deadline", "total", "name", "value", "price", "count", "user",
    "admin", "true", "false", "version", "release", "update", "test", "passed", "failed", "server",
    "port", "host", "debug", "info", "print", "def", "class", "hello", "world", "call", "mom", "rent",
    "paid", "due", "email", "phone", "budget", "plan", "idea", "draft", "review", "send", "check",
    "buy", "coffee", "apples", "chapter", "intro", "summary", "results", "data", "model", "train",
    "loss", "step", "config", "path", "file", "line", "week", "month", "notes", "list",
]


def real_name(rng: random.Random, heldout: bool) -> str:
    """A file name of the kinds people's folders hold: ``notes.md``, ``test_engine.py``,
    ``README.md``, ``report-2024.csv``, ``Makefile``, ``Budget.csv``, and made-up ones."""
    while True:
        form = rng.random()
        ext = rng.choice(REAL_EXTENSIONS)
        if form < 0.3:
            name = rng.choice(REAL_STEMS) + ext
        elif form < 0.5:
            sep = rng.choice("_-")
            other = rng.choice(REAL_STEMS + [str(rng.randint(1, 2030)), "v" + str(rng.randint(1, 9))])
            name = rng.choice(REAL_STEMS) + sep + other + ext
        elif form < 0.6:
            name = rng.choice(REAL_UPPER) + rng.choice([".md", ".txt", ".rst", ""])
        elif form < 0.65:
            name = rng.choice(REAL_BARE)
        elif form < 0.75:
            name = rng.choice(REAL_STEMS).capitalize() + ext
        elif form < 0.85:
            name = rng.choice(REAL_STEMS) + str(rng.randint(1, 99)) + ext
        else:
            name = pseudo_word(rng) + ext
        if held_out(name.split(".")[0]) == heldout:  # the stem, as for made-up names
            return name


def real_folder(rng: random.Random, heldout: bool) -> str:
    while True:
        name = rng.choice(REAL_FOLDERS) if rng.random() < 0.8 else pseudo_word(rng, (1, 2))
        if held_out(name) == heldout:
            return name
