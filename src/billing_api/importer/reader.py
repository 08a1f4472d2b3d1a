"""Reading import files: JSON documents and CSV tables into validated rows, or errors.

Files are streamed, never read whole: ``InputFile.rows`` yields the rows of one section in
file order, and ``chunks`` groups them into batches of a bounded size, so memory does not grow
with the file. A JSON file is walked element by element (``json.JSONDecoder.raw_decode`` on a
sliding buffer); a CSV file line by line. Both must be complete: a CSV file ends with a line
break outside any quoted cell, a JSON document parses to its closing brace.

Every row is validated on its own here (types, formats, lengths); references between rows and
to the database are checked later (``checks``). A row that fails is left out of the batch, but
its natural key is remembered so that rows referring to it do not report a second error.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

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
# Sections read whole before anything else (few rows), and the ones streamed in chunks, in
# the order they are written: a row may refer to rows of an earlier one.
CATALOG = ("distributor", "partners", "vendors", "resources", "service_plans")
STREAMED = ("customers", "subscriptions", "usage")
READ_SIZE = 1 << 20  # characters read at a time
MAX_ROW = 64 << 20  # a JSON row larger than this is an error rather than a memory hog
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_ORDER_SHIFT = 32  # Source.order: file index above, position in the file below


@dataclass(slots=True)
class Parsed(Generic[R]):
    source: Source
    row: R


@dataclass
class Batch:
    """Valid rows by section (all of the catalog, or one chunk of a streamed section), plus
    the keys of the rows that failed (kept for the whole import)."""

    rows: dict[str, list[Parsed[Any]]] = field(default_factory=lambda: defaultdict(list))
    broken: dict[str, set[tuple[str, ...]]] = field(default_factory=lambda: defaultdict(set))

    def section(self, name: str, _model: type[R]) -> list[Parsed[R]]:
        return self.rows[name]


class _Stop(Exception):
    """The file cannot be read on (a syntax error, already reported when it had to be)."""


@dataclass
class InputFile:
    """One file of an import. ``kind`` is ``json`` or ``csv``; ``table`` the CSV's section.

    ``rows(sections)`` streams the rows of the given sections; the first pass over a file
    (``first``) also reports the problems of the file as a whole, which later passes skip.
    ``rows_read`` counts every row of the file (for a manifest), and ``position`` is the
    byte offset read so far (for a progress bar).
    """

    path: Path
    index: int
    kind: str
    problems: Problems
    table: str | None = None
    header: list[str] = field(default_factory=list)
    sections: set[str] = field(default_factory=set)
    rows_read: int | None = None
    readable: bool = True
    position: int = 0
    on_read: Callable[[InputFile], None] | None = None
    _passes: int = 0

    @property
    def name(self) -> str:
        return str(self.path)

    @property
    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def source(self, row: str, position: int) -> Source:
        return Source(self.name, row, (self.index << _ORDER_SHIFT) + position)

    def rows(self, wanted: Iterable[str]) -> Iterator[tuple[str, Source, Any]]:
        """(section, source, data) of every row of the ``wanted`` sections, in file order."""
        if not self.readable:
            return
        first, self._passes = self._passes == 0, self._passes + 1
        wanted = set(wanted)
        try:
            with self.path.open("r", encoding="utf-8-sig", newline="") as handle:
                reading = (_json_rows if self.kind == "json" else _csv_rows)(
                    self, handle, wanted, first)
                yield from reading
        except OSError as exc:
            self.readable = False
            self.problems.add(self.source(".", 0), WHOLE_ROW,
                              f"cannot read the file: {exc.strerror or exc}")
        except UnicodeDecodeError as exc:
            self.readable = False
            if first:
                self.problems.add(self.source(".", 0), WHOLE_ROW,
                                  f"is not UTF-8 text ({exc.reason}): save it as UTF-8")
        except _Stop:
            pass  # reported by the first pass; later passes stop at the same place

    def add(self, source: Source, field_: str, message: str, first: bool) -> None:
        if first:
            self.problems.add(source, field_, message)

    def _tell(self, handle: IO[str]) -> None:
        buffer = getattr(handle, "buffer", None)
        if buffer is not None:
            self.position = buffer.tell()
        if self.on_read is not None:
            self.on_read(self)


def open_files(paths: Sequence[Path], table: str | None, problems: Problems) -> list[InputFile]:
    """The files of an import, each recognised as JSON or CSV (a CSV by its header)."""
    files = []
    for index, path in enumerate(paths):
        whole = Source(str(path), ".", index << _ORDER_SHIFT)
        try:
            with path.open("rb") as handle:
                start = handle.read(READ_SIZE)
        except OSError as exc:
            problems.add(whole, WHOLE_ROW, f"cannot read the file: {exc.strerror or exc}")
            continue
        text = start.decode("utf-8-sig", errors="ignore")
        suffix = path.suffix.lower()
        kind = "json" if suffix == ".json" or (
            suffix != ".csv" and text.lstrip().startswith("{")) else "csv"
        file = InputFile(path, index, kind, problems)
        files.append(file)
        if kind == "json":
            if table is not None:
                problems.add(whole, WHOLE_ROW, "--table applies to CSV files only")
            file.sections = set(SECTIONS)  # known after the first pass
        else:
            _csv_header(file, table)
    return files


def catalog_rows(files: Sequence[InputFile], batch: Batch) -> None:
    """Read the catalog sections of every file into ``batch`` (the first pass over each)."""
    for file in files:
        if not reads_catalog(file):
            continue  # a CSV of a streamed table: its first pass is the streaming one
        wanted = [s for s in CATALOG if s in file.sections]
        for section, source, data in file.rows(wanted):
            validate(section, source, data, batch, file.problems)


def reads_catalog(file: InputFile) -> bool:
    """Whether ``catalog_rows`` reads the file: every JSON file (its sections are known only
    then), and a CSV file of a catalog table."""
    return file.kind == "json" or bool(file.sections & set(CATALOG))


def chunks(files: Sequence[InputFile], section: str, size: int,
           broken: dict[str, set[tuple[str, ...]]]) -> Iterator[Batch]:
    """Batches of at most ``size`` rows of ``section`` from every file in turn (the valid
    ones; the keys of the others go to ``broken``, shared by the whole import)."""
    batch = Batch(broken=broken)
    count = 0
    for file in files:
        if section not in file.sections:
            continue
        for _, source, data in file.rows([section]):
            validate(section, source, data, batch, file.problems)
            count += 1
            if count >= size:
                yield batch
                batch, count = Batch(broken=broken), 0
    if count:
        yield batch


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(READ_SIZE):
            digest.update(block)
    return digest.hexdigest()


# --- JSON ----------------------------------------------------------------------------------


def _parse_json_int(text: str) -> int | Decimal:
    # Python refuses to turn more than 4,300 digits into an int; such a number is too large
    # for any field anyway, and the field's check says so.
    return int(text) if len(text) <= 40 else Decimal(text)


# Set when an object with a repeated key is decoded, cleared by ``validate``: a row is
# validated right after it is decoded, so most rows skip the walk that finds the repeats.
_REPEATS = [False]


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) < len(pairs):
        result = {}
        for key, value in pairs:
            if key in result:
                result.setdefault(_DUPLICATES, []).append(key)
            result[key] = value
        _REPEATS[0] = True
    return result


_DECODER = json.JSONDecoder(parse_float=parse_json_float, parse_int=_parse_json_int,
                            parse_constant=Decimal, object_pairs_hook=_pairs)
# For rows a pass only steps over: checks the syntax all the same, without Python hooks.
_SKIPPING = json.JSONDecoder(parse_int=str)  # no int() of a 5,000-digit number


class _JsonReader:
    """A sliding window over a JSON text: whitespace, single characters and whole values."""

    def __init__(self, file: InputFile, handle: IO[str], first: bool) -> None:
        self.file, self.handle, self.first = file, handle, first
        self.buffer, self.pos, self.line, self.eof = "", 0, 1, False

    def _fill(self) -> bool:
        if self.eof:
            return False
        if self.pos > READ_SIZE:  # drop what is read, counting its lines
            self.line += self.buffer.count("\n", 0, self.pos)
            self.buffer, self.pos = self.buffer[self.pos:], 0
        more = self.handle.read(READ_SIZE)
        self.file._tell(self.handle)
        self.eof = not more
        self.buffer += more
        return bool(more)

    def fail(self, message: str, at: int | None = None) -> _Stop:
        at = self.pos if at is None else at
        line = self.line + self.buffer.count("\n", 0, at)
        column = at - self.buffer.rfind("\n", 0, at)
        self.file.add(self.file.source(str(line), 0), WHOLE_ROW,
                      f"invalid JSON: {message} (line {line}, column {column})", self.first)
        return _Stop()

    def skip_space(self) -> str:
        """The next character after whitespace ("" at the end of the file)."""
        while True:
            self.pos = _WHITESPACE.match(self.buffer, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buffer):
                return self.buffer[self.pos]
            if not self._fill():
                return ""

    def expect(self, *chars: str) -> str:
        char = self.skip_space()
        if char not in chars or not char:
            names = " or ".join(repr(c) for c in chars)
            raise self.fail(f"Expecting {names}" if char else
                            f"the file ends early, expecting {names}: it may be cut short")
        self.pos += 1
        return char

    def value(self, decoder: json.JSONDecoder = _DECODER) -> Any:
        self.skip_space()
        while True:
            try:
                value, end = decoder.raw_decode(self.buffer, self.pos)
            except json.JSONDecodeError as exc:
                # Near the end of the buffer the value may just go on in the next block.
                near_end = exc.pos >= len(self.buffer) - 8 or "Unterminated" in exc.msg
                if near_end and not self.eof and len(self.buffer) - self.pos < MAX_ROW:
                    self._fill()
                    continue
                if near_end and self.eof:
                    raise self.fail(f"{exc.msg}; the file ends inside a value: it may be "
                                    "cut short", exc.pos) from None
                raise self.fail(exc.msg, exc.pos) from None
            except RecursionError:
                raise self.fail("nested too deeply") from None
            except ValueError as exc:
                raise self.fail(str(exc)) from None
            if end == len(self.buffer) and self._fill():
                continue  # a number may go on in the next block
            self.pos = end
            return value


def _json_rows(file: InputFile, handle: IO[str], wanted: set[str],
               first: bool) -> Iterator[tuple[str, Source, Any]]:
    reader = _JsonReader(file, handle, first)
    position = 0
    if reader.skip_space() != "{":
        file.add(file.source(".", 0), WHOLE_ROW,
                 "must be a JSON object whose keys are sections", first)
        if first:
            file.sections = set()
        return
    reader.pos += 1
    seen: set[str] = set()
    rows = 0
    if reader.skip_space() == "}":
        reader.pos += 1
    else:
        while True:
            key = reader.value()
            if not isinstance(key, str):
                raise reader.fail("Expecting property name enclosed in double quotes")
            reader.expect(":")
            position += 1
            section_source = file.source(f".{key}", position)
            known = key in SECTIONS and key not in seen
            if key in seen:
                file.add(file.source(".", position), key, "section given twice", first)
            elif key not in SECTIONS:
                file.add(section_source, WHOLE_ROW, f"unknown section {key!r}; "
                         f"expected {', '.join(SECTIONS)}", first)
            seen.add(key)
            if reader.skip_space() == "[" and key != "distributor":
                reader.pos += 1
                index = 0
                if reader.skip_space() == "]":
                    reader.pos += 1
                else:
                    wanted_here = known and key in wanted
                    while True:
                        data = reader.value(_DECODER if wanted_here else _SKIPPING)
                        position += 1
                        rows += 1
                        if wanted_here:
                            yield key, file.source(f".{key}[{index}]", position), data
                        index += 1
                        if reader.expect(",", "]") == "]":
                            break
            else:
                data = reader.value()
                if known and key == "distributor":
                    rows += 1
                    if key in wanted:
                        yield key, section_source, data
                elif known:
                    file.add(section_source, WHOLE_ROW, "must be a list of objects", first)
            if reader.expect(",", "}") == "}":
                break
    if reader.skip_space():
        raise reader.fail("Extra data after the closing brace")
    if first:
        file.sections = seen & set(SECTIONS)
        file.rows_read = rows


# --- CSV -----------------------------------------------------------------------------------


def _csv_header(file: InputFile, table: str | None) -> None:
    header_source = file.source("1", 1)
    try:
        with file.path.open("r", encoding="utf-8-sig", newline="") as handle:
            first_line = handle.readline()
    except OSError as exc:
        file.problems.add(file.source(".", 0), WHOLE_ROW,
                          f"cannot read the file: {exc.strerror or exc}")
        return
    except UnicodeDecodeError as exc:
        file.problems.add(file.source(".", 0), WHOLE_ROW,
                          f"is not UTF-8 text ({exc.reason}): save it as UTF-8")
        return
    cells = next(csv.reader([first_line], delimiter=_delimiter(first_line)), [])
    header = [cell.strip() for cell in cells]
    problems = file.problems
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
    file.table, file.header, file.sections = section, header, {section}


def _delimiter(first_line: str) -> str:
    return max(",;\t", key=first_line.count)


class _Lines:
    """The file's lines for ``csv.reader``, remembering whether the last one ended."""

    def __init__(self, file: InputFile, handle: IO[str]) -> None:
        self.file, self.handle, self.last = file, handle, "\n"

    def __iter__(self) -> Iterator[str]:
        for count, line in enumerate(self.handle):
            self.last = line
            if count % 4096 == 0:
                self.file._tell(self.handle)
            yield line
        self.file._tell(self.handle)


def _csv_rows(file: InputFile, handle: IO[str], wanted: set[str],
              first: bool) -> Iterator[tuple[str, Source, Any]]:
    if file.table is None:
        return
    lines = _Lines(file, handle)
    header = file.header
    reader = csv.reader(iter(lines), delimiter=_delimiter(handle.readline()), strict=True)
    line = 2
    rows = 0
    try:
        for cells in reader:
            source = file.source(str(line), line)
            line = reader.line_num + 2
            if not any(cell.strip() for cell in cells):
                continue
            rows += 1
            if len(cells) != len(header):
                file.add(source, WHOLE_ROW,
                         f"has {len(cells)} cells but the header has {len(header)} columns",
                         first)
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
            if file.table in wanted:
                yield file.table, source, data
    except csv.Error as exc:
        at = file.source(str(line), line)
        if "unexpected end of data" in str(exc):
            file.add(at, WHOLE_ROW, "the file ends inside a quoted cell (a \" without its "
                     "closing \"): it is cut short or a quote is missing", first)
        else:
            file.add(at, WHOLE_ROW, f"is not valid CSV: {exc}", first)
        raise _Stop() from None
    if not lines.last.endswith(("\n", "\r")):
        file.add(file.source(str(line - 1), line - 1), WHOLE_ROW,
                 "the file does not end with a line break, so its last row may be cut short: "
                 "check the row and end the file with a line break", first)
    if first:
        file.rows_read = rows


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


def validate(section: str, source: Source, data: Any, batch: Batch,
             problems: Problems) -> None:
    """Validate one row on its own: into ``batch``, or its errors into ``problems``."""
    if not isinstance(data, dict):
        problems.add(source, WHOLE_ROW, "must be an object")
        return
    duplicates = list(_duplicate_keys(data, "")) if _REPEATS[0] else []
    _REPEATS[0] = False
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
