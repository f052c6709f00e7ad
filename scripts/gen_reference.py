"""Write the configuration and error-code references from the code, so they cannot drift:
`docs/reference/configuration.md` from `connectra.settings.Settings`, and
`docs/reference/errors.md` from the classes of `connectra.errors`.

    python scripts/gen_reference.py          # rewrite both pages
    python scripts/gen_reference.py --check  # exit 1 and print a diff when a page is stale

`tests/unit/test_reference_docs.py` runs the same functions and fails when a page is stale.
"""

from __future__ import annotations

import argparse
import difflib
import enum
import inspect
import json
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, get_args

from annotated_types import Ge, Gt, Le, Lt
from pydantic import AliasChoices, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from connectra import errors
from connectra.errors import ConnectraError
from connectra.settings import Settings, describe_validation_error

ROOT = Path(__file__).resolve().parents[1]
CONFIGURATION = ROOT / "docs" / "reference" / "configuration.md"
ERRORS = ROOT / "docs" / "reference" / "errors.md"

# The sections of the configuration reference, in this order; each field names its own.
SECTIONS = (
    "Database",
    "Runners",
    "Retries",
    "Leases and retention",
    "S3",
    "Elasticsearch",
    "Imports",
    "API",
    "Metrics and logs",
    "Local development",
)

# The example of an invalid value; its line is what `load_settings` says of it today.
INVALID_EXAMPLE = ("PARALLEL_JOBS", "many", "connectra jobs first_time")

TYPE_NAMES: dict[type, str] = {
    bool: "`true` or `false`",
    int: "integer",
    float: "number",
    str: "text",
    Path: "path",
    SecretStr: "text (secret)",
}
SIGNS = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}

# The tables of the error-code reference, by `ConnectraError.reported_by`: title and intro.
REPORTERS = {
    "api": (
        "Answered by the API",
        'As `{"error": "ERR_CODE: message", "success": false}`, with the HTTP status given.',
    ),
    "job": (
        "Recorded by jobs",
        "In `job_response.error` (`code`, `message`, `details`) and as a line of `runtime_errors`.",
    ),
    "runtime": (
        "Used by the runners and the CLI",
        "The runners handle these or log them; a command that meets one prints "
        "`ERR_CODE: message` and exits with status 1.",
    ),
}


# The pages a "(see ...)" of a description or an error's `when` links to, from docs/reference/.
SEE = {
    "API keys and scopes": "../security.md#api-keys-and-scopes",
    "Leases and rescue": "../design/leases.md",
    "Metrics": "../operations/metrics.md",
    "PgBouncer": "../operations/pgbouncer.md",
    "Queues and priorities": "../job-types/queues.md",
    "Retention": "../operations/retention.md",
    "Retries": "../design/retries.md",
    "Security model": "../security.md",
    "Slow clients and reverse proxies": "../security.md#slow-clients-and-reverse-proxies",
    "Time limits": "../job-control.md#time-limits",
}


def linked(match: re.Match[str]) -> str:
    """`(see Retries)` as a link to that page."""
    name = match.group(1)
    if name not in SEE:
        raise ValueError(f"(see {name}): add the page it means to SEE in {__file__}")
    return f"(see [{name}]({SEE[name]}))"


def cell(text: str) -> str:
    """Text fit for one table cell: one line, `(see ...)` linked, `|` escaped."""
    text = re.sub(r"\(see ([^)]+)\)", linked, " ".join(text.split()))
    return text.replace("|", "\\|")


def table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    """A Markdown table."""
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return lines


# -- configuration ----------------------------------------------------------------------------


def env_names(field: FieldInfo) -> list[str]:
    """The environment variables a field is read from, the preferred one first."""
    alias = field.validation_alias or field.alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    if isinstance(alias, str):
        return [alias]
    raise ValueError(f"a setting without an environment name: {field!r}")


def extra(field: FieldInfo) -> dict[str, Any]:
    """What `connectra.settings._reference` put into the field for this page."""
    shown = field.json_schema_extra
    if not isinstance(shown, dict) or shown.get("section") not in SECTIONS:
        raise ValueError(f"{env_names(field)[0]}: no section of {SECTIONS} given")
    return shown


def literal(value: object) -> str:
    """A default value as it is written in the environment."""
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def default_text(field: FieldInfo) -> str:
    """The default column: the field's own words, else its default value."""
    shown = extra(field)
    if "default_text" in shown:
        return str(shown["default_text"])
    value = field.get_default(call_default_factory=True)
    if value is None or value == ():
        return "unset"
    if value == "":
        return "empty"
    if isinstance(value, dict):
        return f"`{json.dumps(value)}`"
    return literal(value)


def bounds(field: FieldInfo) -> str:
    """The numeric bounds of a field: `from 1 to 1000`, `> 0`, `> 0, ≤ 3600`."""
    limits = {
        name: getattr(rule, name)
        for rule in field.metadata
        if isinstance(rule, Ge | Gt | Le | Lt)
        for name in SIGNS
        if hasattr(rule, name)
    }
    if "ge" in limits and "le" in limits:
        return f"from {limits['ge']} to {limits['le']}"
    return ", ".join(f"{SIGNS[name]} {limits[name]}" for name in SIGNS if name in limits)


def values_text(field: FieldInfo) -> str:
    """The values column: the field's own words, else its type and bounds."""
    shown = extra(field)
    if "values_text" in shown:
        return str(shown["values_text"])
    kinds = [
        kind for kind in get_args(field.annotation) or (field.annotation,) if kind is not type(None)
    ]
    kind = kinds[0] if len(kinds) == 1 else None
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return " or ".join(f"`{member.value}`" for member in kind)
    if kind not in TYPE_NAMES or any(getattr(rule, "pattern", None) for rule in field.metadata):
        raise ValueError(f"{env_names(field)[0]}: say its values with `values=`")
    return f"{TYPE_NAMES[kind]} {bounds(field)}".strip()


def variable_text(field: FieldInfo) -> str:
    """The variable column: its name, and any other name it is read from."""
    first, *others = env_names(field)
    return f"`{first}`" + "".join(f" (or `{other}`)" for other in others)


def invalid_value_line() -> str:
    """What any command prints for INVALID_EXAMPLE, whatever the environment holds."""

    class Given(Settings):
        """The settings from keyword arguments alone: no environment, no `.env`."""

        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings,)

    name, value, _ = INVALID_EXAMPLE
    try:
        Given.model_validate({name: value})
    except ValidationError as exc:
        return describe_validation_error(exc)
    raise AssertionError(f"{name}={value} is accepted")


def reading_rules() -> list[str]:
    """How values are read: sources, their order, empty and invalid values."""
    config = Settings.model_config
    name, value, command = INVALID_EXAMPLE
    empty = "Empty variables count as unset. " if config.get("env_ignore_empty") else ""
    return [
        "## How values are read",
        "",
        f"From environment variables, or from a `{config.get('env_file')}` file in the working "
        "directory (see `.env.example`); a variable set in the environment wins over the file, "
        "and the command-line options `--app` and `--queues` win over both. The seed's names "
        f"and defaults are kept. {empty}An invalid value stops any command with one line "
        "naming the variable and exit code 2 (1 for `connectra healthcheck`):",
        "",
        "```",
        f"$ {name}={value} {command}",
        invalid_value_line(),
        "```",
    ]


def configuration_page() -> str:
    """docs/reference/configuration.md."""
    lines = [
        "# Configuration",
        "",
        "Every setting of Connectra Jobs, by section. This page is generated from "
        "`connectra/settings.py` by `scripts/gen_reference.py`; do not edit it: change the "
        "fields' descriptions there and run `python scripts/gen_reference.py` "
        "(`tests/unit/test_reference_docs.py` fails while the two disagree).",
        "",
        *reading_rules(),
    ]
    fields = list(Settings.model_fields.values())
    for section in SECTIONS:
        rows = [
            (variable_text(f), default_text(f), values_text(f), f.description or "")
            for f in fields
            if extra(f)["section"] == section
        ]
        if rows:
            lines += ["", f"## {section}", ""]
            lines += table(("variable", "default", "values", "meaning"), rows)
    return "\n".join(lines) + "\n"


# -- error codes ------------------------------------------------------------------------------


def error_classes() -> list[type[ConnectraError]]:
    """Every error class of `connectra.errors`, in the order they are defined."""
    return [
        cls
        for cls in vars(errors).values()
        if inspect.isclass(cls)
        and issubclass(cls, ConnectraError)
        and cls.__module__ == errors.__name__
    ]


def own(cls: type[ConnectraError], name: str) -> Any:
    """An attribute the class sets in its own body (an inherited one does not count)."""
    if name not in cls.__dict__:
        raise ValueError(f"{cls.__name__} ({cls.code}) does not set `{name}`")
    return cls.__dict__[name]


def transient_text(cls: type[ConnectraError]) -> str:
    """Whether another attempt may help: yes, no, or when (its classes may differ)."""
    if "transient_when" in cls.__dict__:
        return str(cls.__dict__["transient_when"])
    word = {True: "yes", False: "no"}
    others = [
        f"`{sub.__name__}`"
        for sub in error_classes()
        if issubclass(sub, cls) and sub.code == cls.code and sub.transient != cls.transient
    ]
    if not others:
        return word[cls.transient]
    return f"{word[cls.transient]}; {word[not cls.transient]} when raised as " + ", ".join(others)


def error_row(cls: type[ConnectraError]) -> tuple[str, ...]:
    """One code: its HTTP status, whether transient, its default message and when it happens."""
    message = (cls.__doc__ or "").strip()
    when = str(own(cls, "when"))
    return (f"`{cls.code}`", str(cls.http_status), transient_text(cls), message, when)


def error_tables() -> list[str]:
    """A table per reporter, each code in the first table its class names."""
    coded = [cls for cls in error_classes() if "code" in cls.__dict__]
    lines: list[str] = []
    for reporter, (title, intro) in REPORTERS.items():
        listed = [cls for cls in coded if own(cls, "reported_by")[0] == reporter]
        if reporter == "api":
            listed.sort(key=lambda cls: cls.http_status)
        also = [f"`{cls.code}`" for cls in coded if reporter in own(cls, "reported_by")[1:]]
        if also:
            intro += " Also " + ", ".join(also) + ", listed above."
        lines += ["", f"## {title}", "", intro, ""]
        lines += table(("code", "HTTP", "transient", "message", "when"), map(error_row, listed))
    unknown = {own(cls, "reported_by")[0] for cls in coded} - set(REPORTERS)
    if unknown:
        raise ValueError(f"no table for the reporters {sorted(unknown)}")
    return lines


def errors_page() -> str:
    """docs/reference/errors.md."""
    lines = [
        "# Error codes",
        "",
        "Every `ERR_...` code Connectra Jobs reports, each defined once, in "
        "`connectra/errors.py`. This page is generated from that module by "
        "`scripts/gen_reference.py`; do not edit it: change the error classes there and run "
        "`python scripts/gen_reference.py` (`tests/unit/test_reference_docs.py` fails while "
        "the two disagree). *message* is the default message, which an error may replace with "
        "one naming the case; *HTTP* is the status the API answers it with; *transient* says "
        "whether another attempt may succeed: a job that fails with a transient error is "
        "retried while it has retries left (`retry_count`), any other is `failed_final` at "
        "once.",
        *error_tables(),
    ]
    return "\n".join(lines) + "\n"


# -- the command ------------------------------------------------------------------------------

PAGES: dict[Path, Callable[[], str]] = {CONFIGURATION: configuration_page, ERRORS: errors_page}


def stale(path: Path, text: str) -> list[str]:
    """A unified diff from the committed page to the generated one; empty when they agree."""
    committed = path.read_text() if path.exists() else ""
    name = str(path.relative_to(ROOT))
    return list(
        difflib.unified_diff(
            committed.splitlines(keepends=True),
            text.splitlines(keepends=True),
            f"{name} (committed)",
            f"{name} (generated)",
        )
    )


def main(argv: list[str] | None = None) -> int:
    """Rewrite the pages, or with `--check` say which differ from the code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 when a page is stale")
    check = parser.parse_args(argv).check
    differing = 0
    for path, page in PAGES.items():
        text = page()
        diff = stale(path, text)
        if diff and check:
            sys.stdout.writelines(diff)
            differing += 1
        elif diff:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if differing:
        print(f"\n{differing} page(s) out of date: run `python scripts/gen_reference.py`")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
