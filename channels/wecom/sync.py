"""Full sync of WeCom contacts: follow users -> staff, corp tags -> tags, and every
(customer, follower) pair through ``batch/get_by_user`` -> customers, follows, tags.

Exact, fast, resumable and honest:

Phases: ``staff``, ``tags``, ``contacts`` (the pages), ``apply`` (a corp's first sync on
PostgreSQL only, see below), ``sweep``.

* **Exact.** Every page goes through ``contacts.contacts_apply`` (the callbacks' path
  too), or the same set-based statements. Follows that WeCom no longer lists are marked
  deleted only after a complete pass (the ``sweep`` phase), never because a run died
  half-way.
* **Fast, bounded memory.** Pages stream: a fetch thread reads the next pages while the
  main thread prepares the current buffer (``FLUSH_ROWS``); on PostgreSQL the buffer is
  split by customer between ``WECOM_SYNC_WRITERS`` writer threads, each applying its part
  on its own connection (one server process each, so the database work uses every core).
  Nothing holds more than a few pages and a flush per writer. A corp's first sync on
  PostgreSQL takes two passes: the ``contacts`` phase only stages the rows in the
  database, and the ``apply`` phase writes them a chunk of customers at a time, each
  customer once with all its follows (``_apply_phase`` says why).
* **Resumable.** The checkpoint (phase, batch of userids, page, cursor) is committed in the
  same transaction as the rows it covers, one position per writer's part, so a killed
  worker's successor resumes after the last page every part committed, and re-reading a
  page is harmless (idempotent writes). The apply phase records each chunk it commits.
* **Honest.** Each run is a ``SyncRun`` row: pages, HTTP calls, created / updated /
  deleted counts, errors, and the reconciliation of our active follows against WeCom's.
"""

from __future__ import annotations

import functools
import logging
import operator
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet
from django.db.models.functions import Greatest
from django.utils import timezone

from channels.models import SyncRun, SyncSeenFollow, SyncStatus
from channels.wecom import contacts
from channels.wecom.client import BATCH_GET_BY_USER, WeComClient, get_client
from channels.wecom.contacts import ContactRow, Directory, contacts_apply, rows_from_batch
from channels.wecom.errors import WeComError, WeComTransientError
from channels.wecom.sync_progress import (
    Advance,
    Page,
    Position,
    Writer,
    advance_chunk,
    advance_download,
    bucket_of,
    carried,
    chunk_buckets,
    download_from,
    part_of,
    resume_position,
    writers_running,
)
from customers.models import Customer, CustomerTag, Follow
from customers.services import (
    corp_tags_mirror,
    follows_mark_deleted,
    staff_bulk_ensure,
)

logger = logging.getLogger(__name__)

USERIDS_PER_BATCH = 100  # batch/get_by_user takes at most 100 userids (WECOM.md §1.5)
PAGE_LIMIT = 100
# Rows per flush, split between the writers. Larger flushes share each statement's fixed
# cost (planning, the index walks of the touched customers) among more rows: at a million
# relationships on the stock server, 15,000 took 98.3 s against 104.1 s for 5,000 (same
# hour), for a peak RSS of 189 MB instead of 119 MB (the target is 500 MB). The cost: a
# resumed run re-reads what was fetched after the last commit, three times as many pages.
FLUSH_ROWS = 15_000
PREFETCH_PAGES = 60
# A first sync ANALYZEs the tables it fills each time they have doubled, until this many
# rows were created (see SyncEngine._refresh_statistics).
ANALYZE_UNTIL = 100_000
# A first sync's download that would wait this many seconds for WeCom's rate limit
# (10,000 calls a minute: a million relationships are 10,001 pages) applies what it has
# staged first, and downloads the rest after (see _apply_phase).
RATE_WAIT_APPLY = 3.0

#: What the fetch thread hands over when it stops for the rate limit.
_RATE_LIMITED = object()


class LeaseLost(Exception):
    """Another worker took over this run (ours stopped beating); stop without writing."""


def sync_run_start() -> SyncRun:
    """The running sync if there is one (to resume), else a new run."""
    with transaction.atomic():
        running = SyncRun.objects.select_for_update().filter(status=SyncStatus.RUNNING).first()
        if running is not None:
            return running
        try:
            with transaction.atomic():
                return SyncRun.objects.create()
        except IntegrityError:  # another process started one between our read and insert
            return SyncRun.objects.get(status=SyncStatus.RUNNING)


def _claim(run_id: int, token: str) -> bool:
    """Take the run's lease if it is free, ours, or stale (its worker died)."""
    stale = timezone.now() - timedelta(seconds=settings.WECOM_SYNC_LEASE_SECONDS)
    return (
        SyncRun.objects.filter(pk=run_id, status=SyncStatus.RUNNING)
        .filter(Q(lease_token="") | Q(lease_token=token) | Q(heartbeat_at__lt=stale))
        .update(lease_token=token, heartbeat_at=timezone.now())
        == 1
    )


class SyncEngine:
    """Executes one ``SyncRun`` from its checkpoint to the end."""

    def __init__(
        self,
        run: SyncRun,
        client: WeComClient,
        *,
        flush_rows: int = FLUSH_ROWS,
        prefetch_pages: int = PREFETCH_PAGES,
        retry_delays: tuple[float, ...] = (0.5, 1, 2, 4, 8),
        after_flush: Callable[[SyncRun], None] | None = None,
        writers: int | None = None,
        stage_first_load: bool = True,
    ) -> None:
        self.run = run
        self.client = client
        self.flush_rows = flush_rows
        self.prefetch_pages = prefetch_pages
        self.retry_delays = retry_delays
        self.after_flush = after_flush
        self.writers = writers or settings.WECOM_SYNC_WRITERS
        #: Whether a corp's first sync on PostgreSQL takes two passes (_apply_phase);
        #: False keeps one, as every later sync (the tests compare the two).
        self.stage_first_load = stage_first_load
        self.token = uuid.uuid4().hex
        # The writers' threads share the run's in-memory figures and the statistics.
        self._progress_lock = threading.Lock()
        self._analyze_lock = threading.Lock()
        self.directory = Directory.load()
        self._calls_at_start = client.calls
        self._calls_before = run.http_calls
        self._analyzed_at = 500
        # The corp's first sync loads history: its follows are not news for the timeline.
        self.record_added = SyncRun.objects.filter(status=SyncStatus.SUCCEEDED).exists()

    # --- plumbing ----------------------------------------------------------------------

    def _with_retry(self, what: str, call: Callable[[], Any]) -> Any:
        """Retry transient WeCom errors (45009 storms, busy, network) with backoff; after
        the last delay the error propagates and Celery retries the task, which resumes
        from the checkpoint."""
        for delay in (*self.retry_delays, None):
            try:
                return call()
            except WeComTransientError as exc:
                if delay is None:
                    raise
                logger.warning("sync %s: %s; retrying in %ss", what, exc, delay)
                self._note_error(exc, transient=True)
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _note_error(self, exc: WeComError, *, transient: bool) -> None:
        entry = {**exc.as_dict(), "transient": transient, "at": timezone.now().isoformat()}
        # Keep the list short: a storm of 45009 must not grow the row without bound.
        self.run.errors = [*self.run.errors[-49:], entry]

    def _save(self, **changes: Any) -> None:
        """Persist progress under our lease (same transaction as the rows it describes)."""
        for name, value in changes.items():
            setattr(self.run, name, value)
        self.run.http_calls = self.client.calls - self._calls_at_start + self._calls_before
        self.run.heartbeat_at = timezone.now()
        fields = [*changes, "http_calls", "heartbeat_at", "errors"]
        updated = SyncRun.objects.filter(pk=self.run.pk, lease_token=self.token).update(
            **{name: getattr(self.run, name) for name in fields}
        )
        if updated != 1:
            raise LeaseLost(f"sync #{self.run.pk} was taken over by another worker")

    # --- phases ------------------------------------------------------------------------

    def execute(self) -> SyncRun:
        if not _claim(self.run.pk, self.token):
            logger.info("sync #%s is being executed by another worker", self.run.pk)
            return self.run
        self.run.refresh_from_db()
        self._calls_before = self.run.http_calls
        phases: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "staff": self._staff_phase,
            "tags": self._tags_phase,
            "contacts": self._contacts_phase,
            "apply": self._apply_phase,
            "sweep": self._sweep_phase,
        }
        try:
            checkpoint = {"phase": "staff", **self.run.checkpoint}
            # In order, but a phase may send the run back (see _apply_phase).
            while checkpoint["phase"] != "done":
                checkpoint = phases[checkpoint["phase"]](checkpoint)
        except LeaseLost:
            logger.warning("sync #%s: lease lost, stopping", self.run.pk)
            raise
        except WeComTransientError:
            # Leave the run RUNNING with its checkpoint; the task retries and resumes.
            self._release()
            raise
        except Exception as exc:
            self._fail(exc)
            raise
        return self.run

    def _release(self) -> None:
        SyncRun.objects.filter(pk=self.run.pk, lease_token=self.token).update(
            lease_token="", errors=self.run.errors
        )

    def _fail(self, exc: Exception) -> None:
        if self.run.checkpoint.get("two_pass"):
            # A failed run is not resumed: what it staged is of no more use.
            try:
                contacts.contacts_staged_clear()
            except DatabaseError:
                logger.exception("sync #%s: its staged rows stay until the next", self.run.pk)
        entry = exc.as_dict() if isinstance(exc, WeComError) else {"errmsg": str(exc)}
        self.run.errors = [*self.run.errors[-49:], {**entry, "transient": False}]
        SyncRun.objects.filter(pk=self.run.pk, lease_token=self.token).update(
            status=SyncStatus.FAILED,
            finished_at=timezone.now(),
            lease_token="",
            errors=self.run.errors,
        )
        self.run.status = SyncStatus.FAILED
        logger.error("sync #%s failed: %s", self.run.pk, exc)

    def _staff_phase(self, checkpoint: dict[str, Any]) -> dict[str, Any]:
        userids = sorted(self._with_retry("follow users", self.client.follow_users))
        with transaction.atomic():
            self.directory.staff.update(staff_bulk_ensure(wecom_userids=userids))
            checkpoint = {"phase": "tags", "userids": userids, "batch": 0, "cursor": ""}
            self._save(checkpoint=checkpoint)
        return checkpoint

    def _tags_phase(self, checkpoint: dict[str, Any]) -> dict[str, Any]:
        groups = self._with_retry("corp tags", self.client.corp_tags)
        with transaction.atomic():
            corp_tags_mirror(groups=groups)
            self.directory = Directory.load()
            checkpoint = {**checkpoint, "phase": "contacts", "since": timezone.now().isoformat()}
            self._save(checkpoint=checkpoint)
        return checkpoint

    def _pages(
        self, userids: list[str], start: Position, *, until_rate_limited: bool = False
    ) -> Iterator[Page]:
        """Pages in order from ``start``, read ahead by a thread so that WeCom's latency
        overlaps our writes. The queue is bounded: memory stays a few pages.

        ``until_rate_limited``: stop (and set ``self._rate_limited``) rather than wait
        ``RATE_WAIT_APPLY`` seconds or more for WeCom's rate limit, once a page came."""
        pages: queue.Queue[Page | BaseException | object | None] = queue.Queue(
            maxsize=self.prefetch_pages
        )
        stop = threading.Event()
        self._rate_limited = False

        def fetch() -> None:
            b, n, c = start.batch, start.page, start.cursor
            try:
                while b * USERIDS_PER_BATCH < len(userids) and not stop.is_set():
                    if (
                        until_rate_limited
                        and (b, n) != (start.batch, start.page)
                        and self.client.limiter.wait_ahead(BATCH_GET_BY_USER) >= RATE_WAIT_APPLY
                    ):
                        pages.put(_RATE_LIMITED)
                        return
                    chunk = userids[b * USERIDS_PER_BATCH : (b + 1) * USERIDS_PER_BATCH]
                    answer = self._with_retry(
                        "batch/get_by_user",
                        functools.partial(
                            self.client.batch_get_by_user, chunk, cursor=c, limit=PAGE_LIMIT
                        ),
                    )
                    c = str(answer.get("next_cursor") or "")
                    page = Page(batch=b, number=n, next_cursor=c, rows=rows_from_batch(answer))
                    b, n, c = (b, n + 1, c) if c else (b + 1, 0, "")
                    while not stop.is_set():
                        try:
                            pages.put(page, timeout=0.5)
                            break
                        except queue.Full:
                            continue
                pages.put(None)
            except BaseException as exc:  # handed to the consumer, which re-raises it
                pages.put(exc)

        thread = threading.Thread(target=fetch, name=f"wecom-sync-{self.run.pk}", daemon=True)
        thread.start()
        try:
            while True:
                item = pages.get()
                if item is None:
                    return
                if item is _RATE_LIMITED:
                    self._rate_limited = True
                    return
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, Page)
                yield item
        finally:
            stop.set()
            thread.join(timeout=30)

    def _pipelined(self) -> bool:
        """Whether flushes are written by writer threads on their own connections, while
        this one prepares the next: PostgreSQL (the set-based path), and only outside a
        transaction, whose uncommitted rows another connection could not see (tests)."""
        return contacts._set_based() and not connection.in_atomic_block

    def _contacts_phase(self, checkpoint: dict[str, Any]) -> dict[str, Any]:
        userids: list[str] = checkpoint["userids"]
        buffer: list[ContactRow] = []
        pages_in_buffer = 0
        # A run resumed from a checkpoint written before "since" existed: every follow it
        # wrote so far has a seen row, the ones written from now on are after this.
        if "since" not in checkpoint:
            checkpoint["since"] = timezone.now().isoformat()
        if "first_load" not in checkpoint:
            # Decided once per run (a resumed run keeps it): whether the corp had no WeCom
            # follow at all before this pass; see contacts_apply_prepared(first_load=).
            checkpoint["first_load"] = not _wecom_follows().exists()
        if "two_pass" not in checkpoint:
            # Also once per run: whether this pass stages what it reads, for the apply
            # phase to write it customer by customer (see _apply_phase).
            checkpoint["two_pass"] = (
                self.stage_first_load and checkpoint["first_load"] and contacts._set_based()
            )
        two_pass = bool(checkpoint["two_pass"])
        if two_pass:
            self._staging_check(checkpoint)
        position = resume_position(checkpoint)
        # Every part of this attempt starts where it resumes (a part of an earlier attempt
        # with more writers would otherwise hold the resume point back for good).
        start = [position.batch, position.page, position.cursor]
        checkpoint["parts"] = {str(k): start for k in range(max(self._writer_count(), 1))}
        if checkpoint != self.run.checkpoint:
            with transaction.atomic():
                self._save(checkpoint=checkpoint)
        writers = self._start_writers()

        def write(part: int, rows: list[ContactRow], pages: int) -> Callable[[], None]:
            """The job that writes (or stages) ``part``'s rows and moves its position."""
            if two_pass:
                # In bucket order: the apply phase reads a range of buckets, which then
                # lies in a few neighbouring pages of each flush instead of in one page
                # per row.
                keyed = sorted(((bucket_of(r.external_userid), r) for r in rows), key=_first)
                rows = [r for _b, r in keyed]
                apply: Callable[[], Any] = functools.partial(
                    contacts.contacts_stage_prepared,
                    prepared=contacts.contacts_prepare(rows=rows, directory=self.directory),
                    directory=self.directory,
                    run_id=self.run.pk,
                    buckets=[b for b, _r in keyed],
                )
            elif writers:
                apply = functools.partial(
                    contacts.contacts_apply_prepared,
                    prepared=contacts.contacts_prepare(rows=rows, directory=self.directory),
                    directory=self.directory,
                    run_id=self.run.pk,
                    record_added=self.record_added,
                    first_load=bool(checkpoint["first_load"]),
                )
            else:
                apply = functools.partial(contacts_apply, **self._apply_args(rows))
            return functools.partial(
                self._write,
                functools.partial(advance_download, part, position, two_pass),
                pages,
                apply,
            )

        def flush() -> None:
            nonlocal buffer, pages_in_buffer
            rows, pages = buffer, pages_in_buffer
            buffer, pages_in_buffer = [], 0
            if not writers:
                write(0, rows, pages)()
                return
            # The CPU half here, the database half on the writers' connections: while the
            # server applies this flush (a process per writer, so on every core), this
            # thread and the fetch thread read and prepare the next one. Every writer gets
            # its part, even an empty one: its position moves on with the flush.
            parts: list[list[ContactRow]] = [[] for _ in writers]
            for row in rows:
                parts[part_of(row.external_userid, len(writers))].append(row)
            for k, (writer, part) in enumerate(zip(writers, parts, strict=True)):
                # The pages are counted once, with the first part.
                writer.submit(write(k, part, pages if k == 0 else 0))

        # Every submitted part commits (or fails) before the phase ends.
        with writers_running(writers):
            for page in self._pages(userids, position, until_rate_limited=two_pass):
                buffer.extend(page.rows)
                pages_in_buffer += 1
                # The position *after* this page: where a successor resumes.
                position = page.after()
                if len(buffer) >= self.flush_rows:
                    flush()
            flush()
        if two_pass:
            with self._progress_lock:
                staged = int(self.run.checkpoint.get("staged", 0))
            # A flush's rows per chunk. At a million, 7,500 (a writer's part of a flush)
            # took 30.7 to 32.6 s and 15,000 took 26.9 to 32.4 s (alternate runs of
            # the apply phase alone); a chunk's sorts grow with it, so no larger.
            checkpoint = {
                **carried(checkpoint),
                "phase": "apply",
                "staged": staged,
                "chunks": max(-(-staged // self.flush_rows), 1),
                "done": [],
            }
            if self._rate_limited:
                # Where the next round of the download starts, once these are applied.
                checkpoint["then"] = [position.batch, position.page, position.cursor]
        else:
            checkpoint = {**carried(checkpoint), "phase": "sweep", "batch": position.batch}
        with transaction.atomic():
            self._save(checkpoint=checkpoint)
        return checkpoint

    def _writer_count(self) -> int:
        """Writer threads of a phase: none when the writes go in-line (see _pipelined)."""
        return self.writers if self._pipelined() else 0

    def _start_writers(self, *, backlog: int = 1) -> list[Writer]:
        name = f"wecom-sync-{self.run.pk}-writer"
        return [Writer(f"{name}{k}", backlog=backlog) for k in range(self._writer_count())]

    def _staging_lost(self, checkpoint: dict[str, Any]) -> bool:
        """Whether the staged rows are not those the checkpoint counts: a server crash
        emptied the (unlogged) table, and the round's pages are to be read again."""
        staged = contacts.contacts_staged_count(run_id=self.run.pk)
        if staged == checkpoint.get("staged", 0):
            return False
        logger.warning(
            "sync #%s: %s staged rows of %s are left (the server restarted?); downloading again",
            self.run.pk,
            staged,
            checkpoint.get("staged", 0),
        )
        return True

    def _staging_check(self, checkpoint: dict[str, Any]) -> None:
        """Before a two-pass download (a round of one, see _apply_phase) starts or resumes:
        the staged rows must be those the checkpoint counts. Updates ``checkpoint``."""
        if self._staging_lost(checkpoint):
            checkpoint.update(download_from(checkpoint, checkpoint.get("round_from", [0, 0, ""])))
        if not checkpoint.get("parts"):
            # A new round: what an abandoned run staged goes first.
            contacts.contacts_staged_clear()
            origin = resume_position(checkpoint)
            checkpoint.update(staged=0, round_from=[origin.batch, origin.page, origin.cursor])

    def _apply_phase(self, checkpoint: dict[str, Any]) -> dict[str, Any]:
        """A first sync's second pass: the staged rows, a chunk of buckets at a time.

        Why two passes: WeCom lists a corp's relationships follow user by follow user, so
        the rows of one customer (who has several followers) come pages apart. Applied as
        they come, a customer is written once per follower, its acquisition time and
        owner revised each time, and the writes land all over the tables, which outgrow
        the server's shared buffers: at a million relationships on the stock server, 2.4
        million blocks read and 2.1 million written out by the backends. Applied grouped
        by customer, from the staged copy, each is written once, in the order of its new
        id: 0.4 million blocks read and 0.4 million written out, and 53 to 62 PostgreSQL
        CPU-seconds for the whole sync instead of 91 (README, "A corp's first sync takes
        two passes").

        Chunks go to the writers in turn, each in its own transaction with the chunk's
        number added to the checkpoint's ``done``; a resumed run applies the others. Two
        writers never share a customer (a bucket is a set of customers).

        Rounds: WeCom allows 10,000 calls of ``batch/get_by_user`` a minute, and a
        million relationships are 10,001 pages. A download that would wait for the next
        minute (``RATE_WAIT_APPLY`` or more) stops where it is (``then``) and this phase
        applies what it staged while the minute runs out; the download then goes on from
        there, staging anew, and is applied in turn. A customer whose rows span rounds is
        written once per round: created by the first, its later follows added as a later
        sync would (the acquisition time moves to the earliest add; owner and first
        channel stay those of its first round)."""
        if self._staging_lost(checkpoint):
            checkpoint = download_from(checkpoint, checkpoint.get("round_from", [0, 0, ""]))
            with transaction.atomic():
                self._save(checkpoint=checkpoint)
            return checkpoint
        contacts.contacts_staged_analyze()
        chunks = int(checkpoint["chunks"])
        done = set(checkpoint["done"])
        pending = [chunk for chunk in range(chunks) if chunk not in done]
        # No bound on the writers' queues: a chunk's job holds no rows.
        writers = self._start_writers(backlog=0)
        with writers_running(writers):
            for n, chunk in enumerate(pending):
                apply = functools.partial(
                    contacts.contacts_apply_staged,
                    run_id=self.run.pk,
                    buckets=chunk_buckets(chunk, chunks),
                    record_added=self.record_added,
                )
                job = functools.partial(
                    self._write, functools.partial(advance_chunk, chunk), 0, apply
                )
                if writers:
                    writers[n % len(writers)].submit(job)
                else:
                    job()
        if "then" in checkpoint:
            # The download stopped for the rate limit: its next round, staged anew.
            checkpoint = download_from(checkpoint, checkpoint["then"])
        else:
            checkpoint = {**carried(checkpoint), "phase": "sweep"}
        with transaction.atomic():
            contacts.contacts_staged_clear()
            self._save(checkpoint=checkpoint)
        return checkpoint

    def _apply_args(self, rows: list[ContactRow]) -> dict[str, Any]:
        return {
            "rows": rows,
            "directory": self.directory,
            "run_id": self.run.pk,
            "record_added": self.record_added,
        }

    def _write(self, advance: Advance, pages: int, apply: Callable[[], Any]) -> None:
        """One part of a flush (or one chunk): its rows and its progress, in one
        transaction. ``advance`` moves the checkpoint past them."""
        outermost = not connection.in_atomic_block
        with transaction.atomic():
            if connection.vendor == "postgresql":
                # Safe for a resumable sync: a server crash can lose only the last commits,
                # rows and checkpoint together, and the successor re-reads those pages.
                # JIT compiles each flush's statements anew (their estimated cost passes
                # jit_above_cost on big tables) for plans that run a few milliseconds.
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL synchronous_commit = off; SET LOCAL jit = off")
            applied = apply()
            if connection.vendor == "postgresql" and outermost:
                # The rows' deferred foreign-key checks now, before the run's row is
                # locked below: the other writers wait for that lock until this commits.
                with connection.cursor() as cursor:
                    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            tally = self._record(advance, pages, applied)
        # The in-memory copy once committed (after_flush and the statistics read it).
        tally()
        self._refresh_statistics()
        if self.after_flush:
            self.after_flush(self.run)

    def _record(self, advance: Advance, pages: int, applied: Any) -> Callable[[], None]:
        """Move the checkpoint with ``advance`` and add the figures, under our lease.
        Writers commit in any order, so the figures are added in SQL and each writer's
        advance touches only its own part of the checkpoint. Returns what brings
        ``self.run`` up to date, to call once this has committed."""
        run = (
            SyncRun.objects.select_for_update()
            .filter(pk=self.run.pk, lease_token=self.token)
            .only("checkpoint")
            .first()
        )
        if run is None:
            raise LeaseLost(f"sync #{self.run.pk} was taken over by another worker")
        with self._progress_lock:
            errors = list(self.run.errors)
            calls = self.client.calls - self._calls_at_start + self._calls_before
        SyncRun.objects.filter(pk=self.run.pk).update(
            checkpoint=advance(dict(run.checkpoint), applied),
            pages=F("pages") + pages,
            relationships=F("relationships") + applied.relationships,
            created=F("created") + applied.created,
            updated=F("updated") + applied.updated,
            http_calls=Greatest(F("http_calls"), calls),
            heartbeat_at=timezone.now(),
            errors=errors,
        )
        return functools.partial(self._tally, advance, pages, applied, calls)

    def _tally(self, advance: Advance, pages: int, applied: Any, calls: int) -> None:
        with self._progress_lock:
            run = self.run
            run.checkpoint = advance(dict(run.checkpoint), applied)
            run.pages += pages
            run.relationships += applied.relationships
            run.created += applied.created
            run.updated += applied.updated
            run.http_calls = max(run.http_calls, calls)

    def _refresh_statistics(self) -> None:
        """ANALYZE the tables a first sync is filling, each time they have doubled.

        A new corp's tables start empty, and PostgreSQL keeps planning their look-ups as
        scans of an empty table until autovacuum catches up; each flush then scans what
        the previous ones wrote, and the sync turns quadratic. Fresh statistics keep the
        plans on the indexes.
        """
        # Counted in created rows, not rows read: an unchanged re-sync grows nothing and
        # need not pay for ANALYZE of a million rows. One writer at a time (ANALYZE of a
        # table waits for another's); the others go on writing.
        #
        # Only until ANALYZE_UNTIL rows: by then the statistics hold the shape of the
        # data, and the planner scales its row counts by each table's current size
        # anyway, so the plans stay index look-ups. A round costs about twice the one
        # before it (ANALYZE reads every page of a table under 30,000 pages): the four
        # tables of a 300,000-relationship sync took 0.9 s, and over 25 s of that sync
        # ANALYZE was a ninth of the server's CPU (perf).
        if connection.vendor != "postgresql" or not self._analyze_lock.acquire(blocking=False):
            return
        try:
            with self._progress_lock:
                created = self.run.created
                if created < self._analyzed_at * 2 or self._analyzed_at >= ANALYZE_UNTIL:
                    return
                self._analyzed_at = max(created, 1000)
            with connection.cursor() as cursor:
                for model in (Customer, Follow, CustomerTag, SyncSeenFollow):
                    cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")
        finally:
            self._analyze_lock.release()

    def _sweep_phase(self, checkpoint: dict[str, Any]) -> dict[str, Any]:
        """After a complete pass: follows WeCom no longer lists are deleted, customers with
        no follow left are lost, and the figures are reconciled.

        Seen in this pass: a follow with a seen row (read and left alone), or one written
        since the contacts phase began (``since``; the set-based path records no seen row
        for the follows it writes). Workers' clocks are assumed to agree to within the
        time a resume takes."""
        now = timezone.now()
        since = checkpoint.get("since")
        with transaction.atomic():
            # NOT EXISTS, not NOT IN: PostgreSQL hashes a NOT IN subquery only while it fits
            # in work_mem, and falls back to a quadratic scan at a million follows.
            seen: Exists | Q = Exists(
                SyncSeenFollow.objects.filter(run_id=self.run.pk, follow_id=OuterRef("pk"))
            )
            if since:
                seen = seen | Q(updated_at__gte=datetime.fromisoformat(since))
            ours = _wecom_follows()
            # One pass over the follows for the three figures (each pass reads every
            # follow and probes the seen rows: 1.2 s at 300,000), counted before the
            # marking below, which stamps updated_at. The ids of the gone ones are read,
            # and the active ones counted again, only when some are gone.
            alive = Q(deleted_at__isnull=True)
            figures = ours.aggregate(
                seen=Count("pk", filter=seen),
                active=Count("pk", filter=alive),
                gone=Count("pk", filter=~seen & alive),
            )
            wecom_follows, active, deleted = figures["seen"], figures["active"], 0
            if figures["gone"]:
                gone = ours.filter(~seen, alive).values_list("pk", flat=True)
                deleted = follows_mark_deleted(follow_ids=list(gone), at=now, source="wecom")
                active = ours.filter(alive).count()
            SyncSeenFollow.objects.filter(run_id=self.run.pk).delete()
            self._save(
                status=SyncStatus.SUCCEEDED,
                finished_at=timezone.now(),
                deleted=self.run.deleted + deleted,
                wecom_follows=wecom_follows,
                active_follows=active,
                checkpoint={"phase": "done"},
                lease_token="",
            )
        logger.info(
            "sync #%s done: %s relationships, %s created, %s updated, %s deleted, "
            "WeCom %s vs ours %s",
            self.run.pk,
            self.run.relationships,
            self.run.created,
            self.run.updated,
            self.run.deleted,
            wecom_follows,
            active,
        )
        return {"phase": "done"}


_first = operator.itemgetter(0)


def _wecom_follows() -> QuerySet[Follow]:
    """Follows between a WeCom contact and a WeCom member: what a sync mirrors."""
    return Follow.objects.filter(
        staff__wecom_userid__isnull=False, customer__external_userid__isnull=False
    )


def sync_run_execute(*, run_id: int, client: WeComClient | None = None, **options: Any) -> SyncRun:
    """Execute (or resume) the sync run ``run_id``. A missing run logs and returns it as
    None-safe no-op, so a redelivered task is harmless."""
    run = SyncRun.objects.filter(pk=run_id).first()
    if run is None:
        logger.warning("sync #%s does not exist", run_id)
        raise SyncRun.DoesNotExist(run_id)
    if run.status != SyncStatus.RUNNING:
        logger.info("sync #%s is already %s", run_id, run.status)
        return run
    return SyncEngine(run, client or get_client(), **options).execute()
