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
    """The input has errors; nothing was imported. ``errors`` lists every one of them."""

    code = "import_rejected"

    def __init__(self, errors: Sequence[RowError]) -> None:
        self.errors = tuple(errors)
        count = len(self.errors)
        lines = "\n".join(str(e) for e in self.errors)
        super().__init__(
            f"{count} error{'s' if count != 1 else ''}, nothing was imported:\n{lines}",
            field=self.errors[0].field if self.errors else None,
        )


class Problems:
    """Collects errors while the import validates; ``raise_if_any`` raises them together."""

    def __init__(self) -> None:
        self._errors: list[tuple[int, int, RowError]] = []

    def add(self, source: Source, field: str, message: str) -> None:
        error = RowError(source.file, source.row, field, message)
        self._errors.append((source.order, len(self._errors), error))

    def __bool__(self) -> bool:
        return bool(self._errors)

    @property
    def errors(self) -> list[RowError]:
        """In input order: by row, then in the order they were found."""
        return [e for _, _, e in sorted(self._errors, key=lambda t: (t[0], t[1]))]

    def raise_if_any(self) -> None:
        if self._errors:
            raise ImportRejected(self.errors)
