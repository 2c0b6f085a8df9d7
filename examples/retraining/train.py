"""Retrain a served model after a drift alert: train on a CSV, log the run to the platform's MLflow, register the
result as a new version of the registered model and point the alias `challenger` at it. The run also keeps the
training rows' features as data/reference.csv: once the version is served, a model's `drift.reference:
run:data/reference.csv` compares the logged requests with exactly them.

The WorkflowTemplate beside this file runs it with the workflow's parameters (the alert's model, served version
and the alert itself). MLFLOW_TRACKING_URI names the MLflow server (in the cluster: http://mlflow.mlflow.svc).
Prints one JSON line: the registered version, its run and its accuracy on the held-out rows.

    python train.py --registered-model fraud-scorer --data train.csv --target label \
        --served-version 3 --alertname ModelDrift --alert '{"labels": {...}}'
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

import mlflow
import pandas as pd
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split

ALIAS = "challenger"
"""The alias of a freshly retrained version: promoting it to champion stays a person's decision."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registered-model", required=True, help="the registered model's name in MLflow")
    parser.add_argument("--data", required=True, help="training data: a CSV with the feature columns and --target")
    parser.add_argument("--target", default="label", help="the label column (default: label)")
    parser.add_argument("--served-version", default="", help="the version served when drift was detected")
    parser.add_argument("--alertname", default="", help="the alert that started the retraining")
    parser.add_argument("--alert", default="{}", help="that alert, as JSON")
    args = parser.parse_args()

    frame = pd.read_csv(args.data)
    features, labels = frame.drop(columns=[args.target]), frame[args.target]
    train_x, test_x, train_y, test_y = train_test_split(features, labels, test_size=0.25, random_state=0,
                                                        stratify=labels)
    classifier = LogisticRegression(max_iter=1000).fit(train_x, train_y)
    accuracy = float(accuracy_score(test_y, classifier.predict(test_x)))

    mlflow.set_experiment(f"{args.registered_model}-retraining")
    with mlflow.start_run() as run:
        mlflow.set_tags({"plinth.dev/trigger": args.alertname, "plinth.dev/served-version": args.served_version})
        mlflow.log_params({"rows": len(frame), "features": features.shape[1], "max_iter": 1000})
        mlflow.log_metric("accuracy", accuracy)
        mlflow.log_dict(json.loads(args.alert), "alert.json")
        with tempfile.TemporaryDirectory() as scratch:
            reference = os.path.join(scratch, "reference.csv")
            train_x.to_csv(reference, index=False)
            mlflow.log_artifact(reference, "data")  # what the drift job compares the served inputs with
        logged = mlflow.sklearn.log_model(classifier, name="model", input_example=train_x.head(3))
    # The last step: the result becomes the registered model's newest version, aliased as the challenger.
    version = mlflow.register_model(logged.model_uri, args.registered_model)
    client = MlflowClient()
    client.set_registered_model_alias(args.registered_model, ALIAS, version.version)
    if args.served_version:
        client.set_model_version_tag(args.registered_model, version.version, "plinth.dev/retrained-from",
                                     args.served_version)
    print(json.dumps({"version": str(version.version), "run_id": run.info.run_id, "accuracy": accuracy}))


if __name__ == "__main__":
    main()
