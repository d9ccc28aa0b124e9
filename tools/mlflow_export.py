#!/usr/bin/env python3
"""Import mile's per-cell results into an MLflow SQLite backend: one MLflow run per finished cell.

Reads the files `mile report` / `mile export --format json` write (<results>/cells/<table>/*.json) and,
when present, the per-question predictions of `mile export --format jsonl` (<results>/predictions/...).
Each cell becomes a run of the experiment `mile/<table>`:
  params    the resolved config, flattened (`recipe.lr`, `pretraining.objectives`, ...), plus modules and rank
  metrics   scores (opened, closed, global, recalls, CI bounds), image-shuffle scores and drop, #Params %,
            memory bytes; `train_loss`, `lr` and `epoch_seconds` per fine-tuning epoch (step = epoch)
  tags      mile.cell_id, mile.run_id, code version, git commit and dirty flag, table, row, seed
  artifacts the cell file, its predictions (JSONL) and the table's report (markdown, SVG) when present
Importing again skips cells whose (cell id, mile run id) is already there, so the command can be rerun
after new cells finish. Browse with `mlflow ui --backend-store-uri sqlite:///<db>`.

  python tools/mlflow_export.py --results results --db mlflow.db [--artifacts mlflow-artifacts]
  python tools/mlflow_export.py --check --results results --db mlflow.db   # read back and compare
"""
import argparse
import json
import math
import os
import sys
from pathlib import Path

FORMAT = "mile-cell-result-1"
PARAM_LIMIT = 6000  # MLflow's maximum length of a param value


def flatten(value, prefix=""):
    """Nested maps to dotted keys; lists as JSON text."""
    if isinstance(value, dict):
        out = {}
        for key in sorted(value):
            out.update(flatten(value[key], f"{prefix}{key}."))
        return out
    text = json.dumps(value) if isinstance(value, list) else str(value)
    return {prefix[:-1]: text[:PARAM_LIMIT]}


def number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def score_metrics(scores, prefix):
    out = {f"{prefix}{key}": float(value) for key, value in scores.items() if number(value)}
    for metric, bounds in scores.get("ci95", {}).items():
        out[f"{prefix}{metric}_ci_low"], out[f"{prefix}{metric}_ci_high"] = map(float, bounds)
    return out


def metrics_of(cell):
    out = score_metrics(cell["scores"], "")
    shuffled = cell.get("shuffled_images")
    if shuffled:
        out.update(score_metrics(shuffled["scores"], "shuffled_"))
        out["shuffle_global_drop"] = float(shuffled["global_drop"])
    for scale, counts in cell.get("params", {}).items():
        out[f"params_percent_{scale}"] = float(counts["percent"])
        out[f"trainable_{scale}"] = float(counts["trainable"])
    for key, value in cell.get("memory_bytes", {}).items():
        out[f"memory_bytes_{key}"] = float(value)
    if number(cell.get("run", {}).get("wall_seconds")):
        out["wall_seconds"] = float(cell["run"]["wall_seconds"])
    return out


def load_cells(results):
    cells = []
    for path in sorted(Path(results, "cells").glob("*/*.json")):
        cell = json.loads(path.read_text())
        if cell.get("format") != FORMAT:
            sys.exit(f"{path}: format {cell.get('format')!r}, expected {FORMAT!r} (re-export with this mile)")
        cells.append((path, cell))
    if not cells:
        sys.exit(f"no cell files under {results}/cells/<table>/ (run `mile report` or `mile export --format json`)")
    return cells


def run_name(path):
    return f"{path.parent.name}/{path.stem}"


def existing_runs(client, experiment_id):
    runs = {}
    for run in client.search_runs([experiment_id], max_results=50000):
        runs[(run.data.tags.get("mile.cell_id"), run.data.tags.get("mile.run_id"))] = run
    return runs


def experiment_for(client, table, artifacts):
    name = f"mile/{table}"
    experiment = client.get_experiment_by_name(name)
    if experiment:
        return experiment.experiment_id
    location = Path(artifacts, table).resolve().as_uri()
    return client.create_experiment(name, artifact_location=location)


def log_cell(client, experiment_id, path, cell, results):
    from mlflow.entities import Metric, Param, RunTag
    provenance = cell["provenance"]
    tags = {
        "mlflow.runName": run_name(path), "mile.cell_id": cell["cell_id"], "mile.run_id": str(cell["run"]["id"]),
        "mile.table": cell["table"], "mile.row": cell["row"], "mile.seed": str(cell["seed"]),
        "mile.code_version": provenance["code_version"], "mile.git_commit": provenance.get("git_commit", "unknown"),
        "mile.git_dirty": str(provenance.get("git_dirty", "unknown")), "mile.source_file": cell["source_file"],
    }
    run = client.create_run(experiment_id, tags=tags)
    run_id = run.info.run_id
    params = flatten(cell["config"], "config.")
    params.update({f"modules.{slot}": mode for slot, mode in cell["modules"].items()})
    if "rank" in cell:
        params["rank"] = str(cell["rank"])
    params.update(flatten(cell.get("stage_keys", {}), "stage_key."))
    stamp = 0
    metrics = [Metric(key, value, stamp, 0) for key, value in sorted(metrics_of(cell).items())]
    for epoch in cell.get("epochs", []):
        step = int(epoch["epoch"])
        metrics += [Metric("train_loss", float(epoch["loss"]), stamp, step), Metric("lr", float(epoch["lr"]), stamp, step),
                    Metric("epoch_seconds", float(epoch["seconds"]), stamp, step)]
    params_list = [Param(key, value) for key, value in sorted(params.items())]
    for start in range(0, max(len(params_list), len(metrics)), 100):   # log_batch takes at most 100 params
        client.log_batch(run_id, metrics=metrics[start:start + 100], params=params_list[start:start + 100],
                         tags=[RunTag(k, v) for k, v in tags.items()] if start == 0 else [])
    client.log_artifact(run_id, str(path))
    predictions = Path(results, "predictions", path.parent.name, path.stem + ".jsonl")
    if predictions.exists():
        client.log_artifact(run_id, str(predictions))
    for suffix in (".md", ".svg"):
        report = Path(results, path.parent.name + suffix)
        if report.exists():
            client.log_artifact(run_id, str(report), "report")
    client.set_terminated(run_id, "FINISHED")
    return run_id


def import_cells(args):
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=f"sqlite:///{Path(args.db).resolve()}")
    added = skipped = 0
    known = {}   # experiment id -> the (cell id, mile run id) pairs already imported, searched once per table
    for path, cell in load_cells(args.results):
        experiment_id = experiment_for(client, cell["table"], args.artifacts)
        if experiment_id not in known:
            known[experiment_id] = set(existing_runs(client, experiment_id))
        if (cell["cell_id"], str(cell["run"]["id"])) in known[experiment_id]:
            skipped += 1
            continue
        log_cell(client, experiment_id, path, cell, args.results)
        added += 1
    print(f"{args.db}: {added} runs added, {skipped} already there "
          f"(mlflow ui --backend-store-uri sqlite:///{Path(args.db).resolve()})")


def check(args):
    """Reads every run back through the MLflow client and compares it with its cell file."""
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=f"sqlite:///{Path(args.db).resolve()}")
    problems = []
    cells = load_cells(args.results)
    by_table = {}
    for path, cell in cells:
        if cell["table"] not in by_table:
            experiment = client.get_experiment_by_name(f"mile/{cell['table']}")
            by_table[cell["table"]] = existing_runs(client, experiment.experiment_id) if experiment else {}
        run = by_table[cell["table"]].get((cell["cell_id"], str(cell["run"]["id"])))
        if run is None:
            problems.append(f"{path}: no MLflow run")
            continue
        for key, value in metrics_of(cell).items():
            if abs(run.data.metrics.get(key, math.nan) - value) > 1e-9 * max(1, abs(value)):
                problems.append(f"{path}: metric {key} {run.data.metrics.get(key)} != {value}")
        if run.data.params.get("config.recipe.lr") != str(cell["config"]["recipe"]["lr"]):
            problems.append(f"{path}: param config.recipe.lr differs")
        history = client.get_metric_history(run.info.run_id, "train_loss")
        if [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] != \
                [(e["epoch"], float(e["loss"])) for e in cell.get("epochs", [])]:
            problems.append(f"{path}: train_loss history differs")
    total = sum(len(existing_runs(client, e.experiment_id)) for e in client.search_experiments()
                if e.name.startswith("mile/"))
    if total != len(cells):
        problems.append(f"{total} MLflow runs for {len(cells)} cell files")
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"{args.db}: {len(cells)} runs match their cell files")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", default="results", help="folder with cells/<table>/*.json")
    parser.add_argument("--db", default="mlflow.db", help="MLflow SQLite backend file (created when missing)")
    parser.add_argument("--artifacts", default="mlflow-artifacts", help="artifact root (one folder per table)")
    parser.add_argument("--check", action="store_true", help="read the runs back and compare with the cell files")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{Path(args.db).resolve()}")
    check(args) if args.check else import_cells(args)


if __name__ == "__main__":
    main()
