"""Where a WeCom sync stands and who writes it: positions in the listing, the parts and
buckets that keep a customer's rows together, the checkpoint's advances, and the writer
threads (``channels.wecom.sync`` drives them)."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db import OperationalError, connections
from psycopg2.extensions import TransactionRollbackError

from channels.wecom.contacts import ContactRow

logger = logging.getLogger(__name__)


@dataclass
class Page:
    batch: int
    #: The page's number within its batch (0 first): cursors are opaque, numbers order.
    number: int
    next_cursor: str
    rows: list[ContactRow]

    def after(self) -> Position:
        """Where a successor resumes once this page is committed."""
        if self.next_cursor:
            return Position(self.batch, self.number + 1, self.next_cursor)
        return Position(self.batch + 1, 0, "")


@dataclass(frozen=True, order=True)
class Position:
    """A place in the contacts phase: batch of userids, page within it, its cursor.
    Ordered by (batch, page); the cursor is what the API needs to continue from there."""

    batch: int
    page: int
    cursor: str = field(compare=False)


def resume_position(checkpoint: dict[str, Any]) -> Position:
    """Where the contacts phase resumes: the earliest position any writer's part has
    committed up to (every part committed everything before it), or the phase's start.
    A checkpoint of an earlier version holds one ``batch`` / ``cursor``."""
    parts = checkpoint.get("parts") or {}
    if parts:
        return min(Position(int(b), int(n), str(c)) for b, n, c in parts.values())
    return Position(int(checkpoint.get("batch", 0)), 0, str(checkpoint.get("cursor", "")))


def bucket_of(external_userid: str) -> int:
    """A customer's bucket, in [0, BUCKETS): where a first sync stages its rows, and which
    range of buckets (chunk) applies them."""
    return zlib.crc32(external_userid.encode())


BUCKETS = 1 << 32


def part_of(external_userid: str, parts: int) -> int:
    """The writer's part a customer's rows go to: the same for every row of a customer, so
    that two writers never write one customer (nor its follows, tags or milestones)."""
    return bucket_of(external_userid) % parts


def chunk_buckets(chunk: int, chunks: int) -> tuple[int, int]:
    """The buckets ``[low, high)`` of the apply phase's chunk ``chunk`` of ``chunks``: even
    ranges of a uniform hash, so even shares of the customers."""
    return chunk * BUCKETS // chunks, (chunk + 1) * BUCKETS // chunks


#: Tries of a write that PostgreSQL rolled back for a deadlock or a serialization failure
#: (SQLSTATE class 40: the transaction was rolled back whole, running it again is safe).
#: Two writers write disjoint customers, but a referrer's milestones can still be wanted
#: by both at once.
WRITE_ATTEMPTS = 3


#: Moves a checkpoint (a copy, changed in place and returned) past a write that applied
#: what it was given (an ``ApplyResult``).
Advance = Callable[[dict[str, Any], Any], dict[str, Any]]


def advance_download(
    part: int, position: Position, staged: bool, checkpoint: dict[str, Any], applied: Any
) -> dict[str, Any]:
    """The contacts phase's advance: ``part`` has committed what comes before
    ``position``, and (``staged``) staged ``applied.relationships`` more rows."""
    parts = checkpoint.get("parts") or {}
    checkpoint["parts"] = {**parts, str(part): [position.batch, position.page, position.cursor]}
    if staged:
        checkpoint["staged"] = int(checkpoint.get("staged", 0)) + applied.relationships
    return checkpoint


def advance_chunk(chunk: int, checkpoint: dict[str, Any], applied: Any) -> dict[str, Any]:
    """The apply phase's advance: ``chunk`` is written."""
    checkpoint["done"] = sorted({*checkpoint.get("done", ()), chunk})
    return checkpoint


def carried(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """What the checkpoint of the contacts carries from one phase to the next."""
    keys = ("userids", "since", "first_load", "two_pass", "round_from")
    return {key: checkpoint[key] for key in keys if key in checkpoint}


def download_from(checkpoint: dict[str, Any], at: list[Any]) -> dict[str, Any]:
    """The checkpoint of a download (a round of one) that starts at ``at`` ([batch,
    page, cursor]) with nothing staged yet."""
    batch, _page, cursor = at
    return {
        **carried(checkpoint),
        "phase": "contacts",
        "parts": {},
        "batch": batch,
        "cursor": cursor,
    }


class Writer:
    """A thread that runs submitted writes one at a time, in order, on its own database
    connection. ``submit`` waits while ``backlog`` writes are queued (one by default, so
    at most two flushes are in memory beyond the page buffer; 0: no bound). A write that
    lost a deadlock is run again; any other error stops the writer for good: the writes
    queued behind it are dropped (a later flush must never commit, and move the
    checkpoint, past one that failed), and the error is raised by the next ``submit`` or
    returned by ``close``."""

    def __init__(self, name: str, *, backlog: int = 1) -> None:
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=backlog)
        self._error: BaseException | None = None
        self._failed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while (job := self._jobs.get()) is not None:
                if self._failed:
                    continue
                try:
                    self._attempt(job)
                except BaseException as exc:  # raised in the submitting thread
                    self._error, self._failed = exc, True
        finally:
            connections.close_all()  # this thread's connections only

    @staticmethod
    def _attempt(job: Callable[[], None]) -> None:
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                job()
                return
            except OperationalError as exc:
                if not isinstance(exc.__cause__, TransactionRollbackError):
                    raise
                if attempt == WRITE_ATTEMPTS:
                    raise
                logger.warning("sync write rolled back, running it again: %s", exc)

    def submit(self, job: Callable[[], None]) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        self._jobs.put(job)

    def close(self) -> BaseException | None:
        """Wait for the queued writes; the error that stopped the writer, if one did."""
        self._jobs.put(None)
        self._thread.join()
        error, self._error = self._error, None
        return error


@contextlib.contextmanager
def writers_running(writers: list[Writer]) -> Iterator[None]:
    """Every write submitted in the block commits (or fails) before the block is left,
    and the first error that stopped a writer is raised. When the block itself raises,
    the writers are closed and their own errors, secondary to it, are dropped."""
    try:
        yield
    except BaseException:
        for writer in writers:
            writer.close()
        raise
    errors = [writer.close() for writer in writers]
    if error := next((e for e in errors if e is not None), None):
        raise error
