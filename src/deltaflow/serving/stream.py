"""``stream_score``: :func:`deltaflow.serving.score.score` on a structured stream, Delta in, Delta out.

Exactly once comes from Delta's own streaming source and sink: the source's offsets and the sink's
commits are recorded in the checkpoint, and the sink writes each micro-batch in a transaction tagged
with the query id and batch id, so a batch replayed after a crash or a restart is recognised and
skipped, never appended twice; rows not yet committed are read again. The rows carry the same
lineage columns as :func:`deltaflow.serving.batch.batch_score`'s except ``_input_version`` (a
micro-batch may span several input versions; the offsets in the checkpoint say which), and every
commit's ``userMetadata`` holds the model lineage.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Optional

from deltaflow.errors import InvalidArgument

__all__ = ["stream_score", "TRIGGERS"]

TRIGGERS = ("availableNow", "once", "processingTime")


def _trigger(trigger: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    if trigger is None:
        return None
    if not isinstance(trigger, dict) or len(trigger) != 1 or next(iter(trigger)) not in TRIGGERS:
        raise InvalidArgument(f"trigger must be one of {{'availableNow': True}}, {{'once': True}}, "
                              f"{{'processingTime': '10 seconds'}}; got {trigger!r}")
    name, value = next(iter(trigger.items()))
    if name in ("availableNow", "once") and value is not True:
        raise InvalidArgument(f"trigger {name!r} takes True, got {value!r}")
    if name == "processingTime" and (not isinstance(value, str) or not value.strip()):
        raise InvalidArgument(f"trigger processingTime takes an interval such as '10 seconds', got {value!r}")
    return {name: value}


def stream_score(input: Any, model_uri: str, output: Any, checkpoint_location: str, *,  # noqa: A002
                 output_col: str = "prediction", trigger: Optional[dict[str, Any]] = None,
                 read_options: Optional[dict[str, Any]] = None, result_type: Any = None,
                 params: Optional[dict[str, Any]] = None, env_manager: str = "local",
                 query_name: Optional[str] = None, spark: Any = None, tracking_uri: Optional[str] = None) -> Any:
    """Start a streaming query that scores new rows of the Delta table ``input`` (a path or catalog
    name; or a streaming DataFrame, whose rows then carry no ``_input_table``) with the model at
    ``model_uri`` and appends them, with lineage columns, to the Delta table ``output``; returns the
    ``StreamingQuery``. ``checkpoint_location`` keeps its progress (reuse it to resume exactly once);
    ``trigger``: ``{"availableNow": True}``, ``{"once": True}`` or ``{"processingTime": "…"}`` (Spark's
    default, micro-batches as fast as data comes, when None); ``read_options``: Delta source options
    such as ``maxFilesPerTrigger``."""
    from deltaflow.serving import _tables
    from deltaflow.serving._model import resolve
    from deltaflow.serving.batch import (METADATA_KEY, PARTITION_COLUMNS, _session, scored_with_lineage,
                                         session_confs, write_confs)

    from deltaflow.models.infer import is_spark_dataframe

    given_frame = is_spark_dataframe(input)
    if given_frame and not input.isStreaming:
        raise InvalidArgument("stream_score takes a streaming DataFrame (spark.readStream…) or a Delta table; this "
                              "DataFrame is a batch one: use score() or batch_score() for it")
    input_ref = None if given_frame else _tables.table_ref(input, "input")
    output_ref = _tables.table_ref(output, "output")
    if input_ref == output_ref:
        raise InvalidArgument(f"input and output are the same table ({output_ref.text!r}); score into another table")
    if not isinstance(checkpoint_location, str) or not checkpoint_location.strip():
        raise InvalidArgument(f"checkpoint_location must be a folder path, got {checkpoint_location!r}")
    chosen = _trigger(trigger)
    if read_options is not None and not isinstance(read_options, dict):
        raise InvalidArgument(f"read_options must be a dict of Delta source options, got {read_options!r}")
    if given_frame:
        if read_options:
            raise InvalidArgument("read_options apply to a Delta table input; a streaming DataFrame is already read")
        session, frame = _session(input.sparkSession), input
    else:
        session = _session(spark)
        _tables.latest_version(session, input_ref)  # NotFound now, not in the query's first batch
        source = session.readStream.format("delta")
        for name, value in (read_options or {}).items():
            source = source.option(str(name), str(value))
        frame = source.table(input_ref.text) if input_ref.kind == "name" else source.load(input_ref.text)
    scoring_id = uuid.uuid4().hex
    resolved = resolve(model_uri, tracking_uri)
    try:
        scored, values = scored_with_lineage(frame, resolved, input_ref, None, scoring_id, output_col,
                                             result_type=result_type, params=params, env_manager=env_manager)
    finally:
        resolved.cleanup()
    facts = {k.lstrip("_"): v for k, v in values.items()}
    facts.update(output_col=output_col, mode="stream")
    writer = (scored.writeStream.format("delta").outputMode("append")
              .option("checkpointLocation", checkpoint_location)
              .option("userMetadata", json.dumps({METADATA_KEY: facts}, sort_keys=True)))
    if query_name:
        writer = writer.queryName(query_name)
    if chosen:
        writer = writer.trigger(**chosen)
    if not _tables.exists(session, output_ref):
        writer = writer.partitionBy(*PARTITION_COLUMNS)  # as batch_score lays out the tables it creates
    with session_confs(session, write_confs()):  # the query's session is a copy taken when it starts
        return writer.toTable(output_ref.text) if output_ref.kind == "name" else writer.start(output_ref.text)
