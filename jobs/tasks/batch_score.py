"""Job task: score a Delta table with a registered model and write the predictions as a Delta table,
with ``deltaflow.batch_score`` (Spark: the cluster's session on Databricks, a local one elsewhere)."""

from __future__ import annotations

import argparse

import deltaflow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--input", required=True, help="Delta table to score: a path or a table name")
    parser.add_argument("--model-uri", required=True, help="e.g. models:/churn@champion")
    parser.add_argument("--output", required=True, help="Delta table to write: a path or a table name")
    parser.add_argument("--mode", default="overwrite", help="how to write the output (overwrite, append, merge)")
    parser.add_argument("--key", default="", help="key column(s), comma-separated (merge mode)")
    args = parser.parse_args()

    deltaflow.set_tracking_uri(args.tracking_uri)
    keys = [k for k in args.key.split(",") if k] or None
    result = deltaflow.batch_score(args.input, args.model_uri, args.output, mode=args.mode,
                                   key=keys[0] if keys and len(keys) == 1 else keys, tracking_uri=args.tracking_uri)
    print(f"scored {args.input} with {args.model_uri} into {args.output}: {result}")


if __name__ == "__main__":
    main()
