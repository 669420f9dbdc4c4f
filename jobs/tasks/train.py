"""Job task: train a classifier, log it to deltaflow and register it as a new model version.

Runs as a Databricks ``spark_python_task`` (the job passes its parameters through ``{{job.parameters.*}}``)
and as ``python jobs/tasks/train.py ...`` locally. Tracking goes through delta-rs: no Spark is started.
"""

from __future__ import annotations

import argparse

import deltaflow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tracking-uri", required=True, help="the deltaflow store (a folder, /Volumes/..., dbfs:/...)")
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--C", type=float, default=1.0, help="inverse regularisation strength")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.model_selection import train_test_split

    deltaflow.set_tracking_uri(args.tracking_uri)
    deltaflow.set_experiment(args.experiment)
    features, labels = make_classification(n_samples=600, n_features=6, n_informative=4, random_state=args.seed)
    x_train, x_test, y_train, y_test = train_test_split(features, labels, test_size=0.25, random_state=args.seed)
    with deltaflow.start_run(run_name="train") as run:
        model = LogisticRegression(C=args.C, max_iter=500).fit(x_train, y_train)
        auc = roc_auc_score(y_test, model.predict_proba(x_test)[:, 1])
        deltaflow.log_params({"C": args.C, "seed": args.seed, "n_train": len(x_train)})
        deltaflow.log_metrics({"auc": auc, "accuracy": accuracy_score(y_test, model.predict(x_test))})
        info = deltaflow.sklearn.log_model(model, name="model", registered_model_name=args.model_name)
    print(f"run {run.info.run_id}: auc {auc:.4f}; registered {args.model_name} version "
          f"{info.registered_model_version}")


if __name__ == "__main__":
    main()
