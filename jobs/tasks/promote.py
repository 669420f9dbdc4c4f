"""Job task: point a model's alias (default ``champion``) at its newest version when that version's run
scored better on a metric than the current champion's run (or when there is no champion yet).

Prints the decision; a version that is not better leaves the alias where it is (the run still succeeds).
"""

from __future__ import annotations

import argparse

import deltaflow
from deltaflow.errors import NotFound


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--alias", default="champion")
    parser.add_argument("--metric", default="auc", help="higher is better")
    args = parser.parse_args()

    client = deltaflow.MlflowClient(args.tracking_uri)
    versions = client.search_model_versions(f"name = '{args.model_name}'")
    if not versions:
        raise SystemExit(f"model {args.model_name!r} has no versions to promote")
    newest = max(versions, key=lambda v: int(v.version))
    candidate = client.get_run(newest.run_id).data.metrics[args.metric]
    try:
        current = client.get_model_version_by_alias(args.model_name, args.alias)
    except NotFound:
        current = None
    best = client.get_run(current.run_id).data.metrics[args.metric] if current is not None else None
    if current is not None and int(current.version) == int(newest.version):
        print(f"{args.model_name}@{args.alias} is already version {newest.version}")
    elif best is None or candidate > best:
        client.set_registered_model_alias(args.model_name, args.alias, newest.version)
        print(f"promoted {args.model_name} version {newest.version} to @{args.alias}: {args.metric} {candidate:.4f}"
              + (f" > {best:.4f} (version {current.version})" if best is not None else " (no champion before)"))
    else:
        print(f"kept {args.model_name}@{args.alias} at version {current.version}: {args.metric} {best:.4f} >= "
              f"{candidate:.4f} of version {newest.version}")


if __name__ == "__main__":
    main()
