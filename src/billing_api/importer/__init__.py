"""Importing catalog, customers, subscriptions and usage from JSON and CSV files.

See ``docs/import.md`` for the file formats. ``import_file`` is the entry point; it raises
``ImportRejected`` (an ``InvalidInput``) listing every ``RowError`` of a rejected input.
"""

from billing_api.importer.errors import ImportRejected, RowError
from billing_api.importer.service import ImportSummary, import_file, import_files

__all__ = ["ImportRejected", "ImportSummary", "RowError", "import_file", "import_files"]
