"""When the bytes a batch was read from can be COPYed into PostgreSQL as they are (format csv).

`verbatim_csv` gives the kept rows' own bytes only when PostgreSQL provably reads the values
the converter read; otherwise the batch is sent as converted rows, which is always exact.
Why: sending the file's own bytes spares re-encoding every value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from connectra.catalog import FieldType
from connectra.processors.importing.batches import RecordBatch
from connectra.processors.importing.rows import ConvertedBatch, RowLayout, all_canonical_uuids

_INTEGER = r"-?[0-9]+"
_OFFSET = r"(?:Z|[+-](?:0[0-9]|1[0-4]):[0-5][0-9])"
_TIMESTAMP = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    rf"(?:[T ][0-9]{{2}}:[0-9]{{2}}(?::[0-9]{{2}}(?:\.[0-9]{{1,6}})?)?{_OFFSET}?)?"
)


def _all_match(pattern: str) -> Callable[[Sequence[str]], bool]:
    """A check that every text fully matches `pattern`, in one regex call for the column."""
    column = re.compile(f"(?:{pattern})(?:\\n(?:{pattern}))*").fullmatch
    return lambda texts: column("\n".join(texts)) is not None


_READS_THE_SAME: dict[FieldType, Callable[[Sequence[str]], bool]] = {
    FieldType.TEXT: lambda texts: True,
    FieldType.UUID: all_canonical_uuids,
    FieldType.INTEGER: _all_match(_INTEGER),
    FieldType.BIGINT: _all_match(_INTEGER),
    FieldType.TIMESTAMP: _all_match(_TIMESTAMP),
}


def _reads_the_same(kind: FieldType, texts: Sequence[str]) -> bool:
    """True when PostgreSQL reads every non-empty text of a column as the converter did."""
    given = [text for text in texts if text]
    return not given or _READS_THE_SAME[kind](given)


def verbatim_layout(layout: RowLayout) -> bool:
    """True when the file's columns are the layout's fields in order, none an array."""
    in_order = layout.positions == tuple(range(len(layout.header)))
    return in_order and all(f.type in _READS_THE_SAME for f in layout.fields)


def verbatim_csv(
    layout: RowLayout, batch: RecordBatch, converted: ConvertedBatch
) -> list[memoryview] | None:
    """The CSV bytes of the batch's kept rows (in pieces), if PostgreSQL reads them as converted.

    None otherwise.
    """
    if not converted.size or not verbatim_layout(layout) or not batch.plain():
        return None
    for f, texts, values in zip(layout.fields, converted.texts, converted.columns, strict=True):
        # A column whose values are its texts (text, or uuids already canonical) reads the same.
        same = values is texts or list(values) == list(texts)
        if not same and not _reads_the_same(f.type, texts):
            return None
    return batch.raw(converted.records)
