"""``POST /score``'s model work in a process of its own, beside the HTTP worker.

Why: Python runs one thread of a process at a time. When one BentoML worker
both spoke HTTP and scored, its interpreter lock was the bottleneck under
load (at concurrency 32 on 2 cores the second core was half idle and p99
over 100 ms). The worker now parses, checks, batches and answers requests, and
the child process it starts holds the model (:class:`HouseholdScorer`) and
scores each batch that BentoML's adaptive batching forms: the worker reads
the next requests while the child scores.

The wire is a socket pair and one frame per message: an 8-byte big-endian
length, then a pickle. Both ends are this module, started together, so the
pickles never cross a trust boundary.

- Start-up: the child loads the model and sends ``("ready", ModelInfo)``, or
  ``("failed", message)`` naming the setting or resource at fault.
- Each batch: the worker sends it prepared (``PreparedBatch``: checked, in
  rounds of text tables, :func:`serving.api.score_rounds.prepare_households`); the
  child answers ``("scored", ScoredBatch)`` or ``("error", exception type)``.

The child ignores Ctrl-C (a terminal sends it to the whole process group;
the worker stops the child) and exits when its socket closes, so it never
outlives the worker. If it dies, the batch in flight fails with
:class:`ScoringUnavailable` and the next batch starts a new child; so does a
batch whose wait is cancelled, since its late reply would otherwise answer
the next batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import pickle
import signal
import socket
import struct
import traceback
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any, Literal

import anyio

from .household_scorer import ApiStartupError, HouseholdScorer
from .schemas import ModelInfo
from .score_rounds import PreparedBatch, ScoredBatch
from .settings import ApiSettings

_HEADER = struct.Struct("!Q")
STOP_SECONDS = 10.0
"""How long the worker waits for the child to exit on its own before terminating it."""

_log = logging.getLogger(__name__)


StartReply = tuple[Literal["ready"], ModelInfo] | tuple[Literal["failed"], str]
"""The child's first message: its model is loaded, or why it could not be."""
BatchReply = tuple[Literal["scored"], ScoredBatch] | tuple[Literal["error"], str]
"""The child's answer to a :class:`PreparedBatch`: the scored batch, or the name of the exception raised."""


class ScoringUnavailable(RuntimeError):
    """The scoring process exited while a batch was in flight; the next batch starts a new one."""


class ScoringFailed(RuntimeError):
    """Scoring a batch raised in the scoring process; its log has the traceback."""


def _frame(message: object) -> bytes:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(payload)) + payload


def _receive_exactly(connection: socket.socket, size: int) -> bytearray:
    buffer = bytearray(size)
    view = memoryview(buffer)
    received = 0
    while received < size:
        count = connection.recv_into(view[received:])
        if count == 0:
            raise EOFError("the other end closed the socket")
        received += count
    return buffer


def _receive_frame(connection: socket.socket) -> Any:
    """The next message, unpickled: of the type the protocol sends at that step, named where it is read."""
    (size,) = _HEADER.unpack(_receive_exactly(connection, _HEADER.size))
    return pickle.loads(_receive_exactly(connection, size))


def serve_scorer(connection: socket.socket, settings: ApiSettings) -> None:
    """The child's whole life: load the model, say so, score batches until the worker closes the socket."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(levelname)s] [scoring] %(message)s")
    try:
        scorer = HouseholdScorer.start(settings)
    except Exception as exc:  # noqa: BLE001 - any start-up failure goes back to the worker as its message
        reason = str(exc) if isinstance(exc, ApiStartupError) else f"{type(exc).__name__}: {exc}"
        connection.sendall(_frame(("failed", reason)))
        return
    # The model, its TreeSHAP tables and the libraries live as long as the process: out of the
    # collector's sight, a full collection no longer stalls the batch it falls in.
    gc.collect()
    gc.freeze()
    connection.sendall(_frame(("ready", scorer.info)))
    while True:
        try:
            batch: PreparedBatch = _receive_frame(connection)
        except EOFError:
            return
        reply: BatchReply
        try:
            reply = ("scored", scorer.score(batch))
        except Exception as exc:  # noqa: BLE001 - the worker answers 500; this process keeps serving
            # The frames only: an exception's message may quote a household's cells.
            _log.error(
                "scoring a batch failed with %s\n%s",
                type(exc).__name__,
                "".join(traceback.format_tb(exc.__traceback__)),
            )
            reply = ("error", type(exc).__name__)
        try:
            connection.sendall(_frame(reply))
        except (BrokenPipeError, ConnectionResetError):
            return  # the worker gave up on this batch and closed the socket


@dataclass
class _Child:
    """One running scoring process and the worker's end of its socket."""

    process: BaseProcess
    connection: socket.socket
    info: ModelInfo
    _streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = field(default=None, repr=False)

    async def exchange(self, batch: PreparedBatch) -> BatchReply:
        if self._streams is None:  # asyncio streams bind to the running loop: made on first use
            self._streams = await asyncio.open_connection(sock=self.connection)
        reader, writer = self._streams
        writer.write(_frame(batch))
        await writer.drain()
        (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
        reply: BatchReply = pickle.loads(await reader.readexactly(size))
        return reply

    def close(self) -> None:
        """Close the worker's end: the child reads EOF and returns (in the event loop's thread).

        The transport is aborted, not closed: a graceful close keeps the socket registered with
        the event loop until a cancelled batch's unsent bytes drain, and closing the socket under
        it would leave that registration on a file descriptor the next child's socket reuses (the
        next batch then never gets its answer). Abort unregisters it at once.
        """
        if self._streams is not None:
            with contextlib.suppress(RuntimeError):  # the loop that made the streams is already closed
                self._streams[1].transport.abort()
        self.connection.close()

    def wait(self) -> int | None:
        """Wait for the child to exit, terminating it if it does not; its exit code (blocks)."""
        self.process.join(timeout=STOP_SECONDS)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=STOP_SECONDS)
        return self.process.exitcode


def _exit_text(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def _start_child(settings: ApiSettings) -> _Child:
    """Start a scoring process and wait until its model is loaded; ApiStartupError if it cannot load."""
    context = multiprocessing.get_context("spawn")  # fork would copy the worker's threads' locks mid-use
    ours, theirs = socket.socketpair()
    process = context.Process(
        target=serve_scorer, args=(theirs, settings), name="relapse-scoring", daemon=True
    )
    process.start()
    theirs.close()
    try:
        reply: StartReply = _receive_frame(ours)
    except EOFError:
        ours.close()
        process.join(timeout=STOP_SECONDS)
        raise ApiStartupError(
            f"the scoring process exited while loading the model (exit code {process.exitcode})"
        ) from None
    if reply[0] != "ready":
        ours.close()
        process.join(timeout=STOP_SECONDS)
        raise ApiStartupError(reply[1])
    return _Child(process=process, connection=ours, info=reply[1])


class ScoringProcess:
    """The worker's handle on its scoring process: one batch at a time, restarted if it dies."""

    def __init__(self, settings: ApiSettings, child: _Child) -> None:
        self._settings = settings
        self._child: _Child | None = child
        self.info = child.info
        self._lock = asyncio.Lock()

    @classmethod
    def start(cls, settings: ApiSettings) -> ScoringProcess:
        """Start the scoring process and wait for its model (blocking; the worker's start-up)."""
        return cls(settings, _start_child(settings))

    async def score(self, batch: PreparedBatch) -> ScoredBatch:
        """The scoring process's answers for the batch, in order, and the feature rows it used."""
        async with self._lock:
            if self._child is None:
                try:
                    self._child = await anyio.to_thread.run_sync(_start_child, self._settings)
                except ApiStartupError as exc:
                    raise ScoringUnavailable(f"the scoring process could not start again: {exc}") from None
                self.info = self._child.info  # the registry's champion may have moved since
            child = self._child
            try:
                reply = await child.exchange(batch)
            except asyncio.CancelledError:
                # This batch's reply, still to come, would be read as the next batch's answers:
                # the child is out of step, so it goes (it exits once it finds its socket closed).
                self._child = None
                child.close()
                raise
            except (OSError, EOFError, asyncio.IncompleteReadError):
                self._child = None
                child.close()
                code = await anyio.to_thread.run_sync(child.wait)
                raise ScoringUnavailable(
                    f"the scoring process stopped ({_exit_text(code)}) while scoring {len(batch.answers)} "
                    "households; the next request starts a new one"
                ) from None
        if reply[0] != "scored":
            raise ScoringFailed(f"scoring the batch raised {reply[1]} in the scoring process")
        return reply[1]

    def stop(self) -> int | None:
        """Close the socket and wait for the child to exit (terminate it if it does not); its exit code."""
        child, self._child = self._child, None
        if child is None:
            return None
        child.close()
        return child.wait()
