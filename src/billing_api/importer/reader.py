"""Reading import files: JSON documents and CSV tables into validated rows, or errors.

Every row is validated on its own here (types, formats, lengths); references between rows and
to the database are checked later (``checks``). A row that fails is left out of the batch, but
its natural key is remembered so that rows referring to it do not report a second error.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from billing_api.importer.errors import WHOLE_ROW, Problems, Source
from billing_api.importer.fields import parse_json_float
from billing_api.importer.schema import CSV_TABLES, KEYS, SECTIONS, Row

R = TypeVar("R", bound=Row)
_DUPLICATES = "\x00duplicate keys"  # marker an object holding a key twice carries
_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "is not a known field",
    "string_type": "must be text",
    "string_too_short": "must not be empty",
    "string_too_long": "is longer than {max_length} characters",
    "literal_error": "must be {expected}",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
    "list_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "too_short": "must have at least {min_length} entries",
}


@dataclass(slots=True)
class Parsed(Generic[R]):
    source: Source
    row: R


@dataclass
class Batch:
    """Every valid row of every file, by section, plus the keys of the rows that failed."""

    rows: dict[str, list[Parsed[Any]]] = field(default_factory=lambda: defaultdict(list))
    broken: dict[str, set[tuple[str, ...]]] = field(default_factory=lambda: defaultdict(set))

    def section(self, name: str, _model: type[R]) -> list[Parsed[R]]:
        return self.rows[name]


def read_files(paths: Sequence[Path], table: str | None, problems: Problems) -> Batch:
    batch = Batch()
    order = itertools.count()
    for path in paths:
        name = str(path)
        whole = Source(name, ".", next(order))
        try:
            text = path.read_bytes().decode("utf-8-sig")
        except OSError as exc:
            problems.add(whole, WHOLE_ROW, f"cannot read the file: {exc.strerror or exc}")
            continue
        except UnicodeDecodeError as exc:
            problems.add(whole, WHOLE_ROW, f"is not UTF-8 text (byte {exc.start})")
            continue
        if path.suffix.lower() == ".json" or (
                path.suffix.lower() != ".csv" and text.lstrip().startswith("{")):
            if table is not None:
                problems.add(whole, WHOLE_ROW, "--table applies to CSV files only")
            _read_json(name, text, batch, problems, order)
        else:
            _read_csv(name, text, table, batch, problems, order)
    return batch


def _parse_json_int(text: str) -> int | Decimal:
    # Python refuses to turn more than 4,300 digits into an int; such a number is too large
    # for any field anyway, and the field's check says so.
    return int(text) if len(text) <= 40 else Decimal(text)


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            result.setdefault(_DUPLICATES, []).append(key)
        result[key] = value
    return result


def _read_json(name: str, text: str, batch: Batch, problems: Problems,
               order: Iterator[int]) -> None:
    try:
        document = json.loads(text, parse_float=parse_json_float, parse_int=_parse_json_int,
                              parse_constant=Decimal, object_pairs_hook=_pairs)
    except json.JSONDecodeError as exc:
        problems.add(Source(name, str(exc.lineno), next(order)), WHOLE_ROW,
                     f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})")
        return
    except (RecursionError, ValueError) as exc:
        problems.add(Source(name, ".", next(order)), WHOLE_ROW, "invalid JSON: " + (
            "nested too deeply" if isinstance(exc, RecursionError) else str(exc)))
        return
    if not isinstance(document, dict):
        problems.add(Source(name, ".", next(order)), WHOLE_ROW,
                     "must be a JSON object whose keys are sections")
        return
    for key in document.pop(_DUPLICATES, []):
        problems.add(Source(name, ".", next(order)), key, "section given twice")
    for section, content in document.items():
        source = Source(name, f".{section}", next(order))
        if section not in SECTIONS:
            problems.add(source, WHOLE_ROW, f"unknown section {section!r}; "
                         f"expected {', '.join(SECTIONS)}")
        elif section == "distributor":
            _validate(section, source, content, batch, problems)
        elif not isinstance(content, list):
            problems.add(source, WHOLE_ROW, "must be a list of objects")
        else:
            for index, data in enumerate(content):
                row = Source(name, f".{section}[{index}]", next(order))
                _validate(section, row, data, batch, problems)


def _read_csv(name: str, text: str, table: str | None, batch: Batch, problems: Problems,
              order: Iterator[int]) -> None:
    first_line = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=first_line.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        _read_csv_rows(name, reader, table, batch, problems, order)
    except csv.Error as exc:
        problems.add(Source(name, str(reader.line_num), next(order)), WHOLE_ROW,
                     f"is not valid CSV: {exc}")


def _read_csv_rows(name: str, reader: Any, table: str | None, batch: Batch,
                   problems: Problems, order: Iterator[int]) -> None:
    header_source = Source(name, "1", next(order))
    header = [cell.strip() for cell in next(reader, [])]
    if not any(header):
        problems.add(header_source, WHOLE_ROW, "is empty: a CSV file starts with a header line")
        return
    section = _csv_table(header, table, header_source, problems)
    if section is None:
        return
    columns = list(SECTIONS[section].model_fields)
    unknown = [c for c in header if c.split(".", 1)[0] not in columns]
    for column in unknown:
        problems.add(header_source, column or "(empty)",
                     f"is not a column of {section}; allowed: {', '.join(columns)}")
    repeated = sorted({c for c in header if header.count(c) > 1})
    for column in repeated:
        problems.add(header_source, column, "is a column twice")
    mixed = sorted({c for c in header if "." in c and c.split(".", 1)[0] in header})
    for column in mixed:
        problems.add(header_source, column, f"cannot go with a column {column.split('.')[0]}")
    if unknown or repeated or mixed:
        return
    line = reader.line_num + 1
    for cells in reader:
        source = Source(name, str(line), next(order))
        line = reader.line_num + 1
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            problems.add(source, WHOLE_ROW,
                         f"has {len(cells)} cells but the header has {len(header)} columns")
            continue
        data: dict[str, Any] = {}
        for column, cell in zip(header, cells, strict=True):
            if cell.strip() == "":
                continue  # an empty cell means "not given": the default, or unchanged
            if "." in column:
                outer, inner = column.split(".", 1)
                data.setdefault(outer, {})[inner] = cell
            else:
                data[column] = cell
        _validate(section, source, data, batch, problems)


def _csv_table(header: list[str], table: str | None, source: Source,
               problems: Problems) -> str | None:
    """The table a CSV file holds: ``--table``, or the one table its header fits."""
    if table is not None:
        if table not in CSV_TABLES:
            problems.add(source, WHOLE_ROW,
                         f"--table {table!r} is not one of {', '.join(CSV_TABLES)}")
            return None
        return table
    names = {column.split(".", 1)[0] for column in header}
    fits = [t for t in CSV_TABLES if _required(t) <= names]
    if len(fits) > 1:
        fits = [t for t in fits if names <= set(SECTIONS[t].model_fields)] or fits
    if len(fits) == 1:
        return fits[0]
    if fits:
        problems.add(source, WHOLE_ROW, f"the header fits {', '.join(fits)}: "
                     "say which with --table")
    else:
        needs = "; ".join(f"{t}: {', '.join(sorted(_required(t)))}" for t in CSV_TABLES)
        problems.add(source, WHOLE_ROW,
                     f"the header fits no table (required columns are {needs})")
    return None


def _required(table: str) -> set[str]:
    return {n for n, f in SECTIONS[table].model_fields.items() if f.is_required()}


def _validate(section: str, source: Source, data: Any, batch: Batch,
              problems: Problems) -> None:
    if not isinstance(data, dict):
        problems.add(source, WHOLE_ROW, "must be an object")
        return
    duplicates = list(_duplicate_keys(data, ""))
    for path in duplicates:
        problems.add(source, path, "is given twice")
    try:
        row = SECTIONS[section].model_validate(data)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            problems.add(source, _field(error["loc"]), _message(error))
        row = None
    if row is None or duplicates:
        key = tuple(_key_text(data.get(k)) for k in KEYS[section])
        batch.broken[section].add(key)
        return
    batch.rows[section].append(Parsed(source, row))


def _duplicate_keys(value: Any, path: str) -> Iterator[str]:
    """The paths of keys an object gives twice (removing the parser's markers)."""
    if isinstance(value, dict):
        for key in value.pop(_DUPLICATES, []):
            yield f"{path}.{key}" if path else key
        for key, item in value.items():
            yield from _duplicate_keys(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _duplicate_keys(item, f"{path}[{index}]")


def _key_text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else "" if value is None else str(value)


def _field(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part != "[key]":
            text += f".{part}" if text else part
    return text or WHOLE_ROW


def _message(error: ErrorDetails) -> str:
    template = _MESSAGES.get(error["type"])
    message = template.format(**error.get("ctx", {})) if template else error["msg"]
    if "[key]" in error["loc"]:
        message = f"key {message}"
    if error["type"] not in ("missing", "extra_forbidden"):
        message += f" (got {_show(error['input'])})"
    return message


def _show(value: Any) -> str:
    if isinstance(value, dict | list):
        return "an object" if isinstance(value, dict) else "a list"
    text = repr(value) if isinstance(value, str) else "null" if value is None else (
        str(value).lower() if isinstance(value, bool) else str(value))
    return text if len(text) <= 40 else text[:37] + "..."
