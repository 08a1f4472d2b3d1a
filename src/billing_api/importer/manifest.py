"""An import manifest: the row count and SHA-256 of every file, checked before anything lands.

A manifest is a JSON file written by whoever exports the data (docs/import.md)::

    {"files": {"customers.csv": {"rows": 100000, "sha256": "9f86d0…"}}}

Names are paths relative to the manifest's folder. The digest is checked before the files are
read (a changed or cut file is refused at once), the row count once every row is read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from billing_api.importer.errors import WHOLE_ROW, Problems, Source
from billing_api.importer.reader import InputFile, sha256

_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Expected:
    rows: int
    sha256: str


def read_manifest(path: Path, files: Sequence[InputFile],
                  problems: Problems) -> dict[int, Expected]:
    """What the manifest says of each file (by file index); reports a wrong digest at once."""
    whole = Source(str(path), ".", -1)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        problems.add(whole, WHOLE_ROW, f"cannot read the manifest: {exc.strerror or exc}")
        return {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.add(whole, WHOLE_ROW, f"the manifest is not valid JSON: {exc}")
        return {}
    listed = document.get("files") if isinstance(document, dict) else None
    if not isinstance(listed, dict):
        problems.add(whole, "files", 'the manifest must be {"files": {"NAME": {"rows": N, '
                     '"sha256": "HEX"}, ...}}')
        return {}
    folder = path.resolve().parent
    by_path: dict[Path, tuple[str, Expected]] = {}
    for name, entry in listed.items():
        rows = entry.get("rows") if isinstance(entry, dict) else None
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0 or \
                not isinstance(digest, str) or not _SHA256.fullmatch(digest.lower()):
            problems.add(whole, f"files.{name}", 'must be {"rows": N, "sha256": "64 hex '
                         'digits"}')
            continue
        by_path[(folder / name).resolve()] = (name, Expected(rows, digest.lower()))
    expected: dict[int, Expected] = {}
    for file in files:
        found = by_path.pop(file.path.resolve(), None)
        if found is None:
            problems.add(file.source(".", 0), WHOLE_ROW,
                         f"is not listed in the manifest {path}")
            continue
        expected[file.index] = found[1]
        try:
            actual = sha256(file.path)
        except OSError:
            continue  # reading the file reports it
        if actual != found[1].sha256:
            problems.add(file.source(".", 0), WHOLE_ROW,
                         f"has SHA-256 {actual} but the manifest says {found[1].sha256}: it is "
                         "not the file the manifest describes (cut short or changed?)")
    for name, _ in by_path.values():
        problems.add(whole, f"files.{name}", "is listed in the manifest but not imported")
    return expected


def check_manifest(expected: dict[int, Expected], files: Sequence[InputFile],
                   problems: Problems) -> None:
    """Compare the rows read with the manifest's counts."""
    for file in files:
        wanted = expected.get(file.index)
        if wanted is None or file.rows_read is None or file.rows_read == wanted.rows:
            continue
        problems.add(file.source(".", 0), WHOLE_ROW,
                     f"has {file.rows_read} rows but the manifest says {wanted.rows}")
