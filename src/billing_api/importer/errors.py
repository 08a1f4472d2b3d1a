"""What a rejected import reports: one ``RowError`` per problem, all of them at once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from billing_api.errors import InvalidInput

# The field of a problem that belongs to a whole row or file rather than to one field.
WHOLE_ROW = "-"


@dataclass(frozen=True, slots=True)
class Source:
    """Where a row came from: the file as given, and the row inside it.

    ``row`` is a jq path for JSON (``.customers[2]``) and the line number for CSV (the header
    is line 1). ``order`` sorts errors into the order the rows appear in the input.
    """

    file: str
    row: str
    order: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return f"{self.file}:{self.row}"


@dataclass(frozen=True, slots=True)
class RowError:
    file: str
    row: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.row}: {self.field}: {self.message}"


class ImportRejected(InvalidInput):
    """The input has errors; nothing was imported. ``errors`` lists the first ones (at most
    ``Problems.limit``), ``more`` counts the others."""

    code = "import_rejected"

    def __init__(self, errors: Sequence[RowError], more: int = 0) -> None:
        self.errors = tuple(errors)
        self.more = more
        count = self.total
        lines = "\n".join(str(e) for e in self.errors)
        if more:
            lines += f"\nand {more} more"
        super().__init__(
            f"{count} error{'s' if count != 1 else ''}, nothing was imported:\n{lines}",
            field=self.errors[0].field if self.errors else None,
        )

    @property
    def total(self) -> int:
        return len(self.errors) + self.more


# How many errors a rejection lists; the rest are counted. A broken file of a million rows
# would otherwise hold a million messages in memory and print them all.
ERROR_LIMIT = 100


class Problems:
    """Collects errors while the import validates; ``raise_if_any`` raises them together.

    Keeps the first ``limit`` in input order and counts the rest.
    """

    def __init__(self, limit: int = ERROR_LIMIT) -> None:
        self.limit = limit
        self.count = 0
        self._errors: list[tuple[int, int, RowError]] = []

    def add(self, source: Source, field: str, message: str) -> None:
        error = RowError(source.file, source.row, field, message)
        self._errors.append((source.order, self.count, error))
        self.count += 1
        if len(self._errors) >= 2 * self.limit:  # errors arrive nearly in order: trim now
            self._errors = sorted(self._errors, key=lambda t: (t[0], t[1]))[:self.limit]

    def __bool__(self) -> bool:
        return self.count > 0

    @property
    def errors(self) -> list[RowError]:
        """The first ``limit``, in input order: by row, then in the order they were found."""
        ordered = sorted(self._errors, key=lambda t: (t[0], t[1]))[:self.limit]
        return [e for _, _, e in ordered]

    def raise_if_any(self) -> None:
        if self.count:
            errors = self.errors
            raise ImportRejected(errors, self.count - len(errors))
