"""Where a study lives: an embedded store in results/<name>/ by default, or any Optuna RDB URL.

Default: Optuna's journal file (``results/<name>/study.journal``). Chosen by
measurement on this machine (benchmarks/bench_study.py, numbers in its docstring):
the journal appends one fsync'd JSON line per storage call, SQLite commits a
transaction per call and was several times slower per trial, and the journal is
what Optuna recommends for several processes on one machine. optuna-dashboard
reads it directly (``optuna-dashboard results/<name>/study.journal``).

Accepted ``--storage`` values:

- ``sqlite:///path/to.db`` (embedded, RDB), ``postgresql://user@host/db`` (many
  machines; psycopg 3 is used when psycopg2 is absent), any other SQLAlchemy URL;
- ``journal:///abs/path.journal`` or a plain path ending in ``.journal``/``.log``;
  a plain path ending in ``.db``/``.sqlite``/``.sqlite3`` means SQLite.

Safety. A finished trial is one storage write that has returned: a journal line
handed to the kernel by ``write()``, or a committed SQLite/PostgreSQL transaction.
A killed process (SIGKILL) cannot take either back: the data is in the kernel's page
cache or the database's log, not in the process. Durability against power loss is
traded for speed, measured here: Optuna's journal fsyncs every line (~15 per trial,
0.2-0.8 ms each on this disk, 40-80% of a 1,000-trial quick start), ours fsyncs at most
once a second, so a power cut may lose the last second of trials (the journal's cut-off
tail is repaired as below); SQLite runs in WAL mode with ``synchronous=NORMAL``
(committed transactions survive a process kill; the last ones may not survive a power
cut; WAL needs a local file system). PostgreSQL keeps the server's settings. The
journal's lock is an ``fcntl.flock`` on ``<journal>.lock``, which the kernel drops
when its holder dies (Optuna's default symlink lock would leave a stale lock file
and make the next run wait out its 30 s grace period). A journal whose last line was
cut off by a kill is repaired by moving that unfinished fragment to
``<journal>.partial-<n>`` (nothing is deleted). Anything else unreadable is
reported as one line and the file is left untouched.
"""
from __future__ import annotations

import atexit
import contextlib
import fcntl
import importlib.util
import json
import os
import shutil
import sqlite3
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import optuna.storages
import optuna.storages.journal

from ..errors import CodesignError

JOURNAL_FILE = "study.journal"
SQLITE_FILE = "study.db"
DEFAULT_BACKEND = "journal"          # see the module docstring and benchmarks/bench_study.py


@dataclass(frozen=True)
class StorageRef:
    """A parsed storage location (picklable: worker processes reopen it)."""
    kind: str          # "journal" | "rdb"
    target: str        # journal file path, or the SQLAlchemy URL
    label: str         # for messages (no password)

    @property
    def is_local_file(self) -> bool:
        return self.kind == "journal" or self.target.startswith("sqlite:")

    def dashboard_hint(self) -> str:
        return f"optuna-dashboard {self.target}"


def results_folder(name: str, results_dir=None) -> Path:
    return Path(results_dir or "results") / name


def default_ref(name: str, results_dir=None) -> StorageRef:
    folder = results_folder(name, results_dir)
    if DEFAULT_BACKEND == "journal":
        path = folder / JOURNAL_FILE
        return StorageRef("journal", str(path), str(path))
    path = folder / SQLITE_FILE
    return StorageRef("rdb", f"sqlite:///{path}", str(path))


def parse_ref(url: str | None, name: str | None = None, results_dir=None) -> StorageRef:
    if not url:
        if name is None:
            raise CodesignError("a study name or --storage is needed to find the study")
        return default_ref(name, results_dir)
    url = str(url)
    if url.startswith("journal://"):
        path = url[len("journal://"):]
        return StorageRef("journal", path, path)
    if "://" not in url:
        suffix = Path(url).suffix
        if suffix in (".journal", ".log", ".jsonl"):
            return StorageRef("journal", url, url)
        if suffix in (".db", ".sqlite", ".sqlite3"):
            return StorageRef("rdb", f"sqlite:///{url}", url)
        raise CodesignError(f"cannot tell what storage {url!r} is; use sqlite:///path.db, postgresql://..., "
                            "journal:///path or a path ending in .journal", field="--storage")
    scheme = url.split("://", 1)[0]
    if scheme in ("postgresql", "postgres"):
        url = _postgres_driver(url)
    label = _hide_password(url)
    return StorageRef("rdb", url, label)


def _postgres_driver(url: str) -> str:
    """postgresql:// means psycopg2 to SQLAlchemy; use psycopg 3 when only it is installed."""
    rest = url.split("://", 1)[1]
    if importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + rest
    if importlib.util.find_spec("psycopg") is not None:
        return "postgresql+psycopg://" + rest
    raise CodesignError("PostgreSQL storage needs a driver: pip install 'codesign[postgres]' (psycopg 3)",
                        field="--storage")


def _hide_password(url: str) -> str:
    scheme, _, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if at and ":" in creds:
        creds = creds.split(":", 1)[0] + ":***"
    return f"{scheme}://{creds}{at}{host}"


class FlockLock:
    """Journal lock held with fcntl.flock: released by the kernel if its holder dies."""

    def __init__(self, path: str):
        self._path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __getstate__(self):
        return {"_path": self._path, "_fd": None}


class JournalBackend(optuna.storages.journal.JournalFileBackend):
    """Optuna's JournalFileBackend with an fcntl lock and at most one fsync per second.

    ``append_logs`` writes and flushes every line while holding the lock (so other
    processes and a later resume see it, and a kill cannot lose it), and fsyncs when
    the last fsync is older than ``sync_every`` seconds.
    """

    def __init__(self, path: str, lock: FlockLock, sync_every: float = 1.0) -> None:
        self._cs_lock, self._cs_every, self._cs_synced = lock, sync_every, time.monotonic()
        # FlockLock has the lock interface (acquire/release) of optuna's private base class
        super().__init__(path, lock_obj=cast("optuna.storages.journal._file.BaseJournalFileLock", lock))

    def append_logs(self, logs):
        text = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
        with _locked(self._cs_lock):
            with open(self._file_path, "ab") as f:
                f.write(text.encode("utf-8"))
                f.flush()
                now = time.monotonic()
                if now - self._cs_synced >= self._cs_every:
                    os.fsync(f.fileno())
                    self._cs_synced = now


def _sqlite_engine_kwargs(file: str) -> dict:
    """SQLite in WAL mode, synchronous=NORMAL, waiting up to 120 s for another writer."""
    def connect():
        con = sqlite3.connect(file, timeout=120, check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        return con
    return {"creator": connect}


def _repair_journal_tail(path: Path, lock: FlockLock) -> Path | None:
    """Move an unterminated last line (a write cut off by a kill) aside; return the sidecar."""
    with _locked(lock):
        size = path.stat().st_size
        if size == 0:
            return None
        with open(path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) == b"\n":
                return None
            # find the last newline
            pos, chunk = size, 65536
            cut = 0
            while pos > 0:
                start = max(0, pos - chunk)
                f.seek(start)
                buf = f.read(pos - start)
                i = buf.rfind(b"\n")
                if i >= 0:
                    cut = start + i + 1
                    break
                pos = start
            f.seek(cut)
            fragment = f.read()
            n = 0
            while (side := path.with_name(f"{path.name}.partial-{n}")).exists():
                n += 1
            side.write_bytes(fragment)
            f.truncate(cut)
            f.flush()
            os.fsync(f.fileno())
            return side


@contextlib.contextmanager
def _locked(lock):
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _snapshot(path: Path) -> Path:
    """A private copy of a journal for reading: the file itself is never opened for writing
    (Optuna's journal appends even when it only loads a study). An unfinished last line (a
    killed write) is left out of the copy, and the original keeps it."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        warnings.warn(f"{path}: the last journal line is unfinished (a killed write); read without it, the file "
                      "is left as it is", stacklevel=3)
        data = data[:data.rfind(b"\n") + 1]
    folder = tempfile.mkdtemp(prefix="codesign-journal-")
    atexit.register(shutil.rmtree, folder, True)
    copy = Path(folder) / path.name
    copy.write_bytes(data)
    return copy


def open_storage(ref: StorageRef, create: bool = True, readonly: bool = False):
    """Open the Optuna storage; bad or unreadable storage -> one CodesignError line.
    ``readonly``: for commands that only read (status, best, export, report): a journal is
    read from a private snapshot, so nothing they do can change the file."""
    if ref.kind == "journal":
        path = Path(ref.target)
        if not path.exists():
            if not create or readonly:
                raise CodesignError("no study storage here (run the study first)", file=path)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        if path.is_dir():
            raise CodesignError("expected a journal file, found a folder", file=path)
        if readonly:
            copy = _snapshot(path)
            with guard(ref):
                return optuna.storages.journal.JournalStorage(
                    JournalBackend(str(copy), FlockLock(str(copy) + ".lock")))
        lock = FlockLock(str(path) + ".lock")
        side = _repair_journal_tail(path, lock)
        if side is not None:
            warnings.warn(f"{path}: the last journal line was unfinished (a killed write); moved it to {side}",
                          stacklevel=2)
        with guard(ref):
            return optuna.storages.journal.JournalStorage(JournalBackend(str(path), lock))
    url = ref.target
    kwargs = {}
    if url.startswith("sqlite:"):
        file = url.split(":///", 1)[-1]
        p = Path(file)
        if not p.exists() and not create:
            raise CodesignError("no study storage here (run the study first)", file=p)
        if p.parent and not p.parent.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
        kwargs = _sqlite_engine_kwargs(file)
    else:
        kwargs = {"pool_pre_ping": True}
    with guard(ref):
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


@contextlib.contextmanager
def guard(ref: StorageRef):
    """Turn a storage failure (corrupt file, wrong database, server down) into one line."""
    try:
        yield
    except CodesignError:
        raise
    except Exception as e:   # noqa: BLE001 - every storage failure must become one clear line
        raise storage_error(ref, e) from None


def storage_error(ref: StorageRef, e: BaseException) -> CodesignError:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    msg = msg[:200]
    kind = type(e).__name__
    what = "journal" if ref.kind == "journal" else "database"
    hint = ("it was left untouched; move it aside or pass --storage to use another"
            if ref.is_local_file else "check the URL, the server and the credentials")
    return CodesignError(f"cannot read the study {what} ({kind}: {msg}); {hint}", file=ref.label)
