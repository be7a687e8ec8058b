"""The quality history: every study appends its summary to one SQLite file, so a trend and a regression's start can
be read back across commits.

One run is one row of ``runs`` (commit, dirty flag, lock hash or runtime, time, model, profile, images generated
and cached, wall time), with one row of ``results`` per (variant, metric) (mean, 95% CI of the mean, n) and one row
of ``verdicts`` per gate (status and message). The file carries its schema version (``PRAGMA user_version``); each
append is one ``BEGIN IMMEDIATE`` transaction under a busy timeout, so concurrent studies (pytest-xdist workers, CI
shards on one cache) queue instead of failing. A damaged or foreign file is a one-line :class:`StoreError`.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import sqlite3
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from quantkit.errors import StatsError, StoreError
from quantkit.scores import ScoreTable

FILE_NAME = "history.sqlite"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 60.0
SCHEMA = """
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    git_commit TEXT NOT NULL,
    dirty INTEGER NOT NULL,
    environment TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    model TEXT NOT NULL,
    profile TEXT,
    settings TEXT NOT NULL,
    images_generated INTEGER NOT NULL,
    images_cached INTEGER NOT NULL,
    wall_seconds REAL NOT NULL
);
CREATE TABLE results (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    variant TEXT NOT NULL,
    metric TEXT NOT NULL,
    mean REAL NOT NULL,
    ci_low REAL,
    ci_high REAL,
    n INTEGER NOT NULL
);
CREATE TABLE verdicts (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    gate TEXT NOT NULL,
    variant TEXT NOT NULL,
    metric TEXT NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX results_by_series ON results(variant, metric, run_id);
CREATE INDEX verdicts_by_gate ON verdicts(gate, status, run_id);
"""


def default_path(cache_root: str | Path) -> Path:
    return Path(cache_root) / FILE_NAME


@dataclasses.dataclass(frozen=True)
class Result:
    """One (variant, metric) of a run: the mean and its 95% bootstrap CI (None with fewer than two prompts)."""

    variant: str
    metric: str
    mean: float
    ci_low: float | None
    ci_high: float | None
    n: int


@dataclasses.dataclass(frozen=True)
class GateRecord:
    gate: str  # Gate.describe(): the identity "last passed at" looks up
    variant: str
    metric: str
    status: str  # passed | failed | skipped
    message: str


@dataclasses.dataclass(frozen=True)
class Run:
    """One study's summary, as appended."""

    git_commit: str
    dirty: bool
    environment: str
    timestamp: str
    model: str
    profile: str | None
    settings: dict[str, Any]
    images_generated: int
    images_cached: int
    wall_seconds: float
    results: tuple[Result, ...]
    verdicts: tuple[GateRecord, ...]


@dataclasses.dataclass(frozen=True)
class Point:
    """One run in a (variant, metric) trend."""

    run_id: int
    model: str
    git_commit: str
    dirty: bool
    timestamp: str
    mean: float
    ci_low: float | None
    ci_high: float | None
    n: int
    verdicts: tuple[str, ...]  # status of each gate on this variant and metric in that run

    @property
    def label(self) -> str:
        return self.git_commit[:7] + ("+" if self.dirty else "")


# -- what a run records -----------------------------------------------------------------------------------------
def git_state(cwd: str | Path | None = None) -> tuple[str, bool]:
    """(commit, dirty) of the checkout at ``cwd``; ``("unknown", False)`` outside git or without git."""
    try:
        commit = _git(["rev-parse", "HEAD"], cwd)
        dirty = bool(_git(["status", "--porcelain", "--untracked-files=no"], cwd))
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False
    return commit, dirty


def _git(argv: list[str], cwd: str | Path | None) -> str:
    return subprocess.run(
        ["git", *argv], cwd=cwd, capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()


def environment_id() -> str:
    """``lock:<sha256 of requirements.lock>``, or the runtime's versions where there is no lock (a wheel install)."""
    from quantkit.environment import fingerprint

    env = fingerprint()
    if env["lock_sha256"]:
        return f"lock:{env['lock_sha256']}"
    versions = {name: v for name, v in env["packages"].items() if v}
    return "runtime:" + json.dumps({"python": env["python"], **versions}, sort_keys=True)


def results_of(table: ScoreTable, *, n_resamples: int = 10_000) -> tuple[Result, ...]:
    """The mean and 95% CI of the mean of every (variant, metric) in ``table``: comparable across commits, unlike
    the difference from a reference whose own scores may move."""
    from quantkit.stats import mean_bootstrap

    out = []
    for variant in table.variants:
        for metric in table.metrics:
            scores = table.scores(variant, metric)
            if not scores:
                continue
            mean = sum(scores.values()) / len(scores)
            low = high = None
            if len(scores) >= 2:
                try:
                    ci = mean_bootstrap(scores, metric=metric, variant_name=variant, n_resamples=n_resamples)
                    low, high = ci.low, ci.high
                except StatsError:
                    pass  # no interval (NaN scores): the mean alone is still history
            out.append(Result(variant, metric, mean, low, high, len(scores)))
    return tuple(out)


def gate_records(gates: Any) -> tuple[GateRecord, ...]:
    """One record per verdict and per skipped gate of a :class:`quantkit.profiles.GateResults`."""
    from quantkit.stats import gate_from_dict

    records = [
        GateRecord(v.gate.describe(), v.gate.variant, v.gate.metric, status, message)
        for v, (status, message) in zip(gates.verdicts, gates.lines, strict=False)
    ]
    for skipped, (status, message) in zip(gates.skipped, gates.lines[len(gates.verdicts) :], strict=False):
        gate = gate_from_dict(skipped.gate)
        records.append(GateRecord(gate.describe(), gate.variant, gate.metric, status, message))
    return tuple(records)


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


# -- the database -----------------------------------------------------------------------------------------------
class History:
    """The history file at ``path`` (created with its parents on the first append)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @contextmanager
    def _connect(self, *, create: bool) -> Iterator[sqlite3.Connection]:
        if not create and not self.path.is_file():
            raise StoreError(f"no quality history at {self.path}: run `quantkit study` first (or pass --history)")
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)) as db:
                db.execute("PRAGMA foreign_keys = ON")
                yield db
        except sqlite3.DatabaseError as err:
            raise StoreError(f"quality history {self.path}: {err} (move a damaged file away to start anew)") from err
        except OSError as err:
            raise StoreError(f"quality history {self.path} cannot be opened: {err.strerror or err}") from err

    def _check_schema(self, db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            raise StoreError(
                f"quality history {self.path} has schema version {version}, this quantkit reads {SCHEMA_VERSION}"
            )

    def append(self, run: Run) -> int:
        """Add ``run`` in one transaction; returns its id."""
        with self._connect(create=True) as db:
            db.execute("BEGIN IMMEDIATE")  # takes the write lock before the schema check: two first appends
            try:  # cannot both create the tables
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version == 0 and db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]:
                    raise StoreError(f"{self.path} is an SQLite database but not a quality history: pass another path")
                if version == 0:
                    for statement in SCHEMA.split(";"):
                        if statement.strip():
                            db.execute(statement)
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                elif version != SCHEMA_VERSION:
                    raise StoreError(
                        f"quality history {self.path} has schema version {version}, this quantkit writes "
                        f"{SCHEMA_VERSION}"
                    )
                run_id = db.execute(
                    "INSERT INTO runs (git_commit, dirty, environment, timestamp, model, profile, settings, "
                    "images_generated, images_cached, wall_seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        run.git_commit,
                        int(run.dirty),
                        run.environment,
                        run.timestamp,
                        run.model,
                        run.profile,
                        json.dumps(run.settings, sort_keys=True),
                        run.images_generated,
                        run.images_cached,
                        run.wall_seconds,
                    ),
                ).lastrowid
                db.executemany(
                    "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(run_id, r.variant, r.metric, r.mean, r.ci_low, r.ci_high, r.n) for r in run.results],
                )
                db.executemany(
                    "INSERT INTO verdicts VALUES (?, ?, ?, ?, ?, ?)",
                    [(run_id, v.gate, v.variant, v.metric, v.status, v.message) for v in run.verdicts],
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return int(run_id)

    def run_count(self) -> int:
        with self._connect(create=False) as db:
            self._check_schema(db)
            return db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]

    def trend(
        self,
        *,
        variants: Sequence[str] = (),
        metrics: Sequence[str] = (),
        model: str | None = None,
        settings: dict[str, Any] | None = None,
        last: int | None = None,
    ) -> dict[tuple[str, str], list[Point]]:
        """(variant, metric) -> its points, oldest run first (the ``last`` runs of each series when given);
        ``settings`` keeps the runs made with exactly these study settings (same prompts, sampler, resolution)."""
        where, params = [], []
        for column, values in (("r.variant", variants), ("r.metric", metrics)):
            if values:
                where.append(f"{column} IN ({', '.join('?' * len(values))})")
                params += list(values)
        if model is not None:
            where.append("runs.model = ?")
            params.append(model)
        if settings is not None:
            where.append("runs.settings = ?")
            params.append(json.dumps(settings, sort_keys=True))
        query = (
            "SELECT r.variant, r.metric, runs.id, runs.model, runs.git_commit, runs.dirty, runs.timestamp, r.mean, "
            "r.ci_low, r.ci_high, r.n, (SELECT group_concat(v.status, ',') FROM verdicts v "
            "WHERE v.run_id = runs.id AND v.variant = r.variant AND v.metric = r.metric) "
            "FROM results r JOIN runs ON runs.id = r.run_id"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + " ORDER BY r.variant, r.metric, runs.id"
        )
        with self._connect(create=False) as db:
            self._check_schema(db)
            rows = db.execute(query, params).fetchall()
        series: dict[tuple[str, str], list[Point]] = {}
        for variant, metric, run_id, model_name, commit, dirty, stamp, mean, low, high, n, statuses in rows:
            verdicts = tuple(s for s in (statuses or "").split(",") if s)
            point = Point(run_id, model_name, commit, bool(dirty), stamp, mean, low, high, n, verdicts)
            series.setdefault((variant, metric), []).append(point)
        if last is not None:
            series = {key: points[-last:] for key, points in series.items()}
        return series

    def last_passed(self, gate: str, *, model: str, profile: str | None) -> tuple[str, str] | None:
        """(commit, date) of the latest run of ``model`` and ``profile`` in which ``gate`` passed, or None."""
        if not self.path.is_file():
            return None
        with self._connect(create=False) as db:
            self._check_schema(db)
            row = db.execute(
                "SELECT runs.git_commit, runs.timestamp FROM verdicts v JOIN runs ON runs.id = v.run_id "
                "WHERE v.gate = ? AND v.status = 'passed' AND runs.model = ? AND runs.profile IS ? "
                "ORDER BY runs.id DESC LIMIT 1",
                (gate, model, profile),
            ).fetchone()
        return None if row is None else (row[0], row[1][:10])


def annotate(gates: Any, history: History, *, model: str) -> Any:
    """``gates`` (a GateResults) with each failed verdict's message ending in where that gate last passed:
    ``... gate non_inferior failed; last passed at abc1234 (2026-12-01)``."""
    verdicts = []
    for verdict in gates.verdicts:
        found = (
            None if verdict.passed else history.last_passed(verdict.gate.describe(), model=model, profile=gates.profile)
        )
        if found is not None:
            commit, date = found
            verdict = dataclasses.replace(verdict, message=f"{verdict.message}; last passed at {commit[:7]} ({date})")
        verdicts.append(verdict)
    return dataclasses.replace(gates, verdicts=tuple(verdicts))


def format_trend(series: dict[tuple[str, str], list[Point]]) -> str:
    """The trend as text: one block per variant and metric, one line per run (commit, date, mean [CI], verdicts)."""
    blocks = []
    for (variant, metric), points in series.items():
        lines = [f"{variant} {metric}"]
        for p in points:
            ci = "" if p.ci_low is None or math.isnan(p.ci_low) else f" [{p.ci_low:.4g}, {p.ci_high:.4g}]"
            verdicts = " ".join(p.verdicts) or "no gate"
            lines.append(f"  {p.label:8s} {p.timestamp[:19]}  {p.model}  {p.mean:.4g}{ci}  n={p.n}  {verdicts}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


@dataclasses.dataclass
class Recording:
    """A study's link to the history: where it is, and what the score table does not say about the run. Every
    method turns a history failure into :attr:`error` (one line), so a damaged file never costs the study's report."""

    history: History
    model: str
    settings: dict[str, Any]
    images_generated: int = 0
    images_cached: int = 0
    started: float = dataclasses.field(default_factory=time.perf_counter)
    error: str | None = None

    def annotate(self, gates: Any) -> Any:
        try:
            return annotate(gates, self.history, model=self.model)
        except StoreError as err:
            self.error = str(err)
            return gates

    def append(self, table: ScoreTable, gates: Any, *, n_resamples: int = 10_000) -> int | None:
        commit, dirty = git_state()
        run = Run(
            git_commit=commit,
            dirty=dirty,
            environment=environment_id(),
            timestamp=now(),
            model=self.model,
            profile=None if gates is None else gates.profile,
            settings=self.settings,
            images_generated=self.images_generated,
            images_cached=self.images_cached,
            wall_seconds=time.perf_counter() - self.started,
            results=results_of(table, n_resamples=n_resamples),
            verdicts=() if gates is None else gate_records(gates),
        )
        try:
            return self.history.append(run)
        except StoreError as err:
            self.error = str(err)
            return None

    def series(self) -> dict[tuple[str, str], list[Point]]:
        """This study's comparable runs (same settings), for the report's trend plot; empty after an error."""
        if self.error is not None:
            return {}
        try:
            return self.history.trend(settings=self.settings)
        except StoreError as err:
            self.error = str(err)
            return {}
