"""Recovery from a writer killed between the two commits of one flush.

A flush commits the metric history (``metrics``) and then the latest-value candidates
(``latest_metrics``), each as its own Delta commit carrying the same marker
``deltaflow:<writer>:<batch>``. Delta makes each commit atomic, but not the pair: a process killed
between them leaves history that ``get_run`` and search (which read ``latest_metrics``) do not see.

Healing pairs the markers: a ``metrics`` commit with no ``latest_metrics`` commit of the same
marker is torn, and its missing candidates are derived from that commit's own rows (the max by
``(step, timestamp, value)`` per run and key, as the writer would have) and committed under the
same marker. Extra candidates never change a read (readers keep the max), so a healer racing the
writer itself, or another healer, is harmless; the marker keeps it from happening more than once
in the usual case. Every store reader heals before its first read of latest values and then at
most once a minute; ``deltaflow gc --mark-dead`` heals over the whole history.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Iterator, Optional
from urllib.parse import unquote

from deltaflow.config import StoreLocation
from deltaflow.store.fold import metric_order
from deltaflow.store.schema import TABLES

__all__ = ["heal_torn_flushes", "heal_quietly"]

_log = logging.getLogger(__name__)
_WRITER_MARKER = "deltaflow:"


def heal_torn_flushes(location: StoreLocation, storage_options: Optional[dict[str, str]] = None, *,
                      window: Optional[int] = 200, grace_s: float = 5.0) -> int:
    """Commit the latest-value candidates of every torn flush among the last ``window`` commits of
    ``metrics`` (None: all of them) older than ``grace_s``. Returns how many flushes were healed."""
    from deltalake import CommitProperties, DeltaTable, write_deltalake

    from deltaflow.store import _arrow
    from deltaflow.store.compaction import _marker_of, read_data_file

    metrics_uri = location.table_path("metrics")
    latest_uri = location.table_path("latest_metrics")
    if not (DeltaTable.is_deltatable(metrics_uri, storage_options=storage_options)
            and DeltaTable.is_deltatable(latest_uri, storage_options=storage_options)):
        return 0
    # Versions come from the log's file names, read here directly: DeltaTable.history() numbers its
    # entries down from the version the handle loaded, so a commit landing in between would shift
    # every number and heal the wrong commit under a marker.
    metrics_latest = DeltaTable(metrics_uri, storage_options=storage_options).version()
    latest_latest = DeltaTable(latest_uri, storage_options=storage_options).version()
    cutoff = time.time() * 1000 - grace_s * 1000
    flushed: dict[str, tuple[int, list[str]]] = {}
    for version, actions in _recent_commits(metrics_uri, metrics_latest, window, storage_options):
        info = next((a["commitInfo"] for a in actions if "commitInfo" in a), {})
        marker = info.get("userMetadata")
        if (isinstance(marker, str) and marker.startswith(_WRITER_MARKER)
                and info.get("timestamp", 0) <= cutoff and marker not in flushed):
            flushed[marker] = (version, [unquote(a["add"]["path"]) for a in actions if "add" in a])
    if not flushed:
        return 0
    # latest_metrics gets one commit per flush, in the same order, plus the odd compaction or heal:
    # a margin past the window covers the pairs.
    paired = {_marker_of(actions) for _, actions in
              _recent_commits(latest_uri, latest_latest, None if window is None else window + 100, storage_options)}
    torn = sorted((v, m, paths) for m, (v, paths) in flushed.items() if m not in paired)
    schema = TABLES["latest_metrics"].schema
    for version, marker, paths in torn:
        best: dict[tuple[str, str], tuple] = {}
        for path in paths:
            rows = read_data_file(metrics_uri, path, schema.names)
            cols = [rows.column(n).to_pylist() for n in schema.names]
            for run_id, experiment_id, key, value, step, ts in zip(*cols):
                cur = best.get((run_id, key))
                if cur is None or metric_order(value, step, ts) > metric_order(cur[3], cur[4], cur[5]):
                    best[(run_id, key)] = (run_id, experiment_id, key, value, step, ts)
        if not best:
            continue
        data = _arrow.table({n: [row[i] for row in best.values()] for i, n in enumerate(schema.names)}, schema)
        write_deltalake(latest_uri, data, mode="append", storage_options=storage_options,
                        commit_properties=CommitProperties(custom_metadata={"userMetadata": marker}))
        _log.warning("deltaflow: healed a flush torn by a crash (%s, metrics version %d): %d latest "
                     "value(s) restored", marker, version, len(best))
    return len(torn)


def heal_quietly(location: StoreLocation, storage_options: Optional[dict[str, str]] = None) -> Optional[int]:
    """heal_torn_flushes for a read path: a store that cannot be written (read-only) is still read."""
    try:
        return heal_torn_flushes(location, storage_options)
    except Exception as exc:  # noqa: BLE001 - reads must not fail because healing could not write
        _log.info("deltaflow: could not check %s for torn flushes: %s", location.uri, exc)
        return None


def _recent_commits(table_uri: str, newest: int, count: Optional[int],
                    storage_options: Optional[dict[str, str]]) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """(version, actions) of a table's newest ``count`` commits, newest first (None: every commit
    still in the log; older ones are removed after a checkpoint once past log retention)."""
    from deltaflow.store.compaction import _read_commit

    version, seen = newest, 0
    while version >= 0 and (count is None or seen < count):
        try:
            actions = _read_commit(table_uri, version, storage_options)
        except OSError:  # cleaned up: nothing older is left either
            return
        yield version, actions
        version -= 1
        seen += 1
