"""Exemplars in multiprocess mode: one small file per worker beside prometheus_client's `.db`
files, since prometheus_client drops every exemplar in that mode.

A worker's file, ``corrstack_exemplars_<pid>.bin``, is allocated in full when it is created
(`posix_fallocate`), so a disk that fills up later cannot fault a write into it. It holds a
header and fixed-size slots, one per histogram bucket that has had an exemplar; a slot holds
the bucket's series, the latest exemplar's labels, value and time, behind a CRC-32 of all that.
Only its own worker writes a file, each slot in one copy under the GIL; a scrape in another
worker may still read a slot half-written, sees the checksum fail and reads it again, or leaves
that bucket's exemplar out of this one scrape. Nothing is ever read that was not written whole.

>>> store = ExemplarFile.create("/run/metrics", pid=os.getpid())
>>> key = bucket_key("http_request_duration_seconds_bucket", {"le": "0.25", ...})
>>> store.record(key, 0.2, {"request_id": "r1"})
>>> read_exemplars("/run/metrics")[("http_request_duration_seconds_bucket", (("le", "0.25"), ...))]
Exemplar(labels={'request_id': 'r1'}, value=0.2, timestamp=1764581234.5)
"""

from __future__ import annotations

import glob
import mmap
import os
import re
import struct
import threading
import time
import zlib
from collections.abc import Iterator, Mapping

import orjson
from prometheus_client.samples import Exemplar

FILE_PREFIX = "corrstack_exemplars_"
FILE_SUFFIX = ".bin"  # not `.db`: prometheus_client's collector reads every `*.db` file as its own
FILE_PATTERN = re.compile(rf"^{FILE_PREFIX}(\d+){re.escape(FILE_SUFFIX)}$")
SLOT_BYTES = 512
SLOTS = 1024
FILE_BYTES = SLOT_BYTES * (SLOTS + 1)  # the header takes the first slot's room: 512.5 KiB
# OpenMetrics' bound on an exemplar's label names and values together, in characters.
MAX_EXEMPLAR_CHARS = 128

_MAGIC = b"CSEXMPL1"
_HEADER = struct.Struct("<8sIII")  # magic, slot bytes, slot count, slots in use
_SLOT_HEAD = struct.Struct("<IH")  # CRC-32 of the body, body length
_VALUE_TIME = struct.Struct("<dd")
_KEY_LEN = struct.Struct("<H")
_BODY_ROOM = SLOT_BYTES - _SLOT_HEAD.size
_READ_ATTEMPTS = 3

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


class ExemplarFileError(OSError):
    """The exemplar file could not be created (no space, read-only or unwritable directory)."""


def exemplar_path(directory: str, pid: int) -> str:
    return os.path.join(directory, f"{FILE_PREFIX}{pid}{FILE_SUFFIX}")


def exemplar_fits(labels: Mapping[str, str]) -> bool:
    """True when `labels` are within OpenMetrics' bound (prometheus_client raises past it)."""
    return sum(len(k) + len(v) for k, v in labels.items()) <= MAX_EXEMPLAR_CHARS


def bucket_key(sample_name: str, labels: Mapping[str, str]) -> bytes:
    """A bucket's series as stored in a slot: its sample name and sorted labels, `le` included."""
    return orjson.dumps([sample_name, sorted(labels.items())])


class ExemplarFile:
    """One worker's exemplar slots: written by that worker only, read by every scrape."""

    def __init__(self, path: str, pid: int, memory: mmap.mmap) -> None:
        self.path = path
        self.pid = pid
        self._memory = memory
        self._slots: dict[bytes, int] = {}  # bucket key -> slot offset
        self._lock = threading.Lock()  # for allocating a slot; writes are single copies

    @classmethod
    def create(cls, directory: str, pid: int) -> ExemplarFile:
        """Create (or take over, after a pid was reused) the file of `pid`, allocated in full.

        Raises ExemplarFileError when the directory has no room or cannot be written.
        """
        path = exemplar_path(directory, pid)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as error:
            message = f"cannot create {path}: {error.strerror}"
            raise ExemplarFileError(error.errno, message) from None
        try:
            try:
                os.posix_fallocate(fd, 0, FILE_BYTES)
            except OSError as error:
                os.close(fd)
                fd = -1
                os.unlink(path)
                raise ExemplarFileError(
                    error.errno, f"cannot allocate {FILE_BYTES} bytes for {path}: {error.strerror}"
                ) from None
            memory = mmap.mmap(fd, FILE_BYTES, access=mmap.ACCESS_WRITE)
        finally:
            if fd >= 0:
                os.close(fd)  # the mapping keeps the file
        memory[: _HEADER.size] = _HEADER.pack(_MAGIC, SLOT_BYTES, SLOTS, 0)
        return cls(path, pid, memory)

    def record(self, key: bytes, value: float, labels: Mapping[str, str]) -> bool:
        """Store `labels` as the latest exemplar of the bucket `key`; False when it cannot be
        kept (too long for a slot or OpenMetrics, or every slot taken)."""
        if not exemplar_fits(labels):
            return False
        offset = self._slots.get(key)
        if offset is None:
            offset = self._allocate(key)
            if offset is None:
                return False
        body = (
            _VALUE_TIME.pack(value, time.time())
            + _KEY_LEN.pack(len(key))
            + key
            + orjson.dumps(labels)
        )
        if len(body) > _BODY_ROOM:
            return False
        # One slice assignment: one copy, made while holding the GIL.
        self._memory[offset : offset + _SLOT_HEAD.size + len(body)] = (
            _SLOT_HEAD.pack(zlib.crc32(body), len(body)) + body
        )
        return True

    def _allocate(self, key: bytes) -> int | None:
        with self._lock:
            offset = self._slots.get(key)
            if offset is not None:
                return offset
            used = len(self._slots)
            if used >= SLOTS or len(key) > _BODY_ROOM - _VALUE_TIME.size - _KEY_LEN.size:
                return None
            offset = SLOT_BYTES * (used + 1)
            self._slots[key] = offset
            # The count goes up before the slot is first written: a reader meanwhile finds an
            # empty slot (length 0) and skips it.
            self._memory[: _HEADER.size] = _HEADER.pack(_MAGIC, SLOT_BYTES, SLOTS, used + 1)
            return offset

    def close(self) -> None:
        self._memory.close()


def read_exemplars(directory: str) -> dict[SeriesKey, Exemplar]:
    """The latest exemplar of each bucket over every worker's file in `directory`."""
    latest: dict[SeriesKey, tuple[float, Exemplar]] = {}
    for path in glob.glob(os.path.join(glob.escape(directory), f"{FILE_PREFIX}*{FILE_SUFFIX}")):
        for key, timestamp, exemplar in _read_file(path):
            current = latest.get(key)
            if current is None or timestamp > current[0]:
                latest[key] = (timestamp, exemplar)
    return {key: exemplar for key, (_, exemplar) in latest.items()}


def _read_file(path: str) -> Iterator[tuple[SeriesKey, float, Exemplar]]:
    try:
        with open(path, "rb") as file:
            header = file.read(SLOT_BYTES)
            if len(header) < _HEADER.size:
                return
            magic, slot_bytes, slots, used = _HEADER.unpack_from(header)
            if magic != _MAGIC or slot_bytes != SLOT_BYTES:
                return
            data = file.read(SLOT_BYTES * min(used, slots, SLOTS))
            for start in range(0, len(data) - SLOT_BYTES + 1, SLOT_BYTES):
                slot = data[start : start + SLOT_BYTES]
                for _ in range(_READ_ATTEMPTS):
                    parsed = _parse_slot(slot)
                    if parsed is not False:
                        break
                    # Read while its worker was writing it: read that slot again.
                    slot = os.pread(file.fileno(), SLOT_BYTES, SLOT_BYTES + start)
                if isinstance(parsed, tuple):
                    yield parsed
    except OSError:  # its worker was marked dead meanwhile, or the file is not readable
        return


def _parse_slot(slot: bytes) -> tuple[SeriesKey, float, Exemplar] | bool | None:
    """The slot's bucket and exemplar; None for an empty slot, False for one that fails its
    checksum (half-written, or not ours)."""
    if len(slot) < _SLOT_HEAD.size:
        return False
    crc, length = _SLOT_HEAD.unpack_from(slot)
    if length == 0:
        return None
    body = slot[_SLOT_HEAD.size : _SLOT_HEAD.size + length]
    if length > _BODY_ROOM or zlib.crc32(body) != crc:
        return False
    try:
        value, timestamp = _VALUE_TIME.unpack_from(body)
        (key_length,) = _KEY_LEN.unpack_from(body, _VALUE_TIME.size)
        key_start = _VALUE_TIME.size + _KEY_LEN.size
        name, labels = orjson.loads(body[key_start : key_start + key_length])
        exemplar_labels = orjson.loads(body[key_start + key_length :])
        series = (str(name), tuple((str(k), str(v)) for k, v in labels))
        exemplar = Exemplar({str(k): str(v) for k, v in exemplar_labels.items()}, value, timestamp)
        return series, timestamp, exemplar
    except (struct.error, orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
        return False
