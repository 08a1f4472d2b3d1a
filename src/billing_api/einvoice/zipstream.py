"""A ZIP archive written front to back, one entry at a time, for a streamed response.

Each entry is whole in memory when it is added (one invoice's document), so its sizes and
CRC go into its local header and no data descriptor is needed. The API stores entries
uncompressed: deflating a few KB of UBL cost more than rendering it (bench/einvoice.py).
The only state kept across entries is the central directory: one packed record of about
70 bytes per entry, not a ``zipfile.ZipInfo`` object each (several hundred bytes: 50,000
invoices would hold tens of MiB). Offsets past 4 GiB and more than 65,535 entries use the
ZIP64 records.
"""

from __future__ import annotations

import datetime as dt
import struct
import zlib
from collections.abc import Iterator

ZIP64_LIMIT = 0xFFFFFFFF
UTF8_NAMES = 0x0800
STORED, DEFLATED = 0, 8
MADE_BY = (3 << 8) | 45  # Unix, ZIP 4.5
FILE_MODE = 0o100644 << 16


def _dos_time(moment: dt.datetime) -> tuple[int, int]:
    day = ((moment.year - 1980) << 9) | (moment.month << 5) | moment.day
    time = (moment.hour << 11) | (moment.minute << 5) | (moment.second // 2)
    return time, day


class ZipStream:
    """``entry`` and ``close`` return the bytes to send next."""

    def __init__(self, *, level: int = 1, moment: dt.datetime | None = None) -> None:
        self._level = level
        self._time, self._date = _dos_time(moment or dt.datetime.now(dt.UTC))
        self._offset = 0
        self._central = bytearray()  # one buffer: no object per entry
        self._count = 0

    def entry(self, name: str, data: bytes, *, compress: bool = True) -> tuple[bytes, bytes]:
        """One file: its local header, then its (deflated) data (a pair, not a generator:
        one per invoice of a bulk ZIP)."""
        encoded = name.replace("\\", "_").replace("/", "_").encode()
        crc = zlib.crc32(data)
        if compress:
            packer = zlib.compressobj(self._level, zlib.DEFLATED, -15)
            body = packer.compress(data) + packer.flush()
            method = DEFLATED
        else:
            body, method = data, STORED
        header = struct.pack(
            "<IHHHHHIIIHH", 0x04034B50, 20, UTF8_NAMES, method, self._time, self._date, crc,
            len(body), len(data), len(encoded), 0,
        )
        offset = self._offset
        extra = b""
        if offset >= ZIP64_LIMIT:
            extra = struct.pack("<HHQ", 0x0001, 8, offset)
        self._central += (
            struct.pack(
                "<IHHHHHHIIIHHHHHII", 0x02014B50, MADE_BY, 45 if extra else 20, UTF8_NAMES,
                method, self._time, self._date, crc, len(body), len(data), len(encoded),
                len(extra), 0, 0, 0, FILE_MODE, min(offset, ZIP64_LIMIT),
            )
            + encoded
            + extra
        )
        self._offset += len(header) + len(encoded) + len(body)
        self._count += 1
        return header + encoded, body

    def close(self) -> Iterator[bytes]:
        """The central directory and the end records."""
        start = self._offset
        directory = bytes(self._central)
        self._central = bytearray()
        yield directory
        end = start + len(directory)
        total = self._count
        if total > 0xFFFF or start >= ZIP64_LIMIT or len(directory) >= ZIP64_LIMIT:
            yield struct.pack(
                "<IQHHIIQQQQ", 0x06064B50, 44, MADE_BY, 45, 0, 0, total, total,
                len(directory), start,
            )
            yield struct.pack("<IIQI", 0x07064B50, 0, end, 1)
        yield struct.pack(
            "<IHHHHIIH", 0x06054B50, 0, 0, min(total, 0xFFFF), min(total, 0xFFFF),
            min(len(directory), ZIP64_LIMIT), min(start, ZIP64_LIMIT), 0,
        )
