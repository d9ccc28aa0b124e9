"""Compares the exports of the kill test's rounds with the uninterrupted grid (tools/kill-test.sh).

Usage: kill_test_compare.py REF ROUND...   (names of export-NAME/ and cache-NAME/ folders in the cwd)
"""
import glob
import hashlib
import json
import os
import struct
import sys

KEPT = ["cell_id", "config", "epochs", "params", "scores", "shuffled_images", "stage_keys"]


def cells(name):
    out = {}
    for path in sorted(glob.glob(f"export-{name}/cells/k/*.json")):
        cell = json.load(open(path))
        record = {key: cell[key] for key in KEPT}
        for epoch in record["epochs"]:
            epoch.pop("seconds", None)
        record["engine_peak"] = cell["memory_bytes"]["engine_peak_run_scale"]
        out[os.path.basename(path)] = record
    return out


def digest(path):
    data = open(path, "rb").read()
    if not path.endswith(".safetensors"):
        return hashlib.sha256(data).hexdigest()
    # The header's metadata carries a per-file id and epoch times; the tensors and their layout must be identical.
    size = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + size])
    metadata = header.get("__metadata__", {})
    metadata.pop("id", None)
    # The base's history lines are "epoch loss lr seconds samples [step losses]": all but the seconds must match.
    if "history" in metadata:
        metadata["history"] = "\n".join(" ".join(f for i, f in enumerate(line.split(" ")) if i != 3)
                                        for line in metadata["history"].split("\n"))
    return hashlib.sha256(json.dumps(header, sort_keys=True).encode() + data[8 + size:]).hexdigest()


def files(pattern):
    return {os.path.basename(p): digest(p) for p in sorted(glob.glob(pattern))}


def differences(ref_name, name):
    ref, killed = cells(ref_name), cells(name)
    problems = []
    for cell in sorted(set(ref) | set(killed)):
        a, b = ref.get(cell), killed.get(cell)
        if a is None or b is None:
            problems.append(f"{name} {cell}: only in {ref_name if b is None else name}")
            continue
        for key in a:
            if a[key] != b[key]:
                problems.append(f"{name} {cell}: {key} differs\n  {ref_name}: {a[key]}\n  {name}: {b[key]}")
    for pattern in ["export-{}/predictions/k/*.jsonl", "cache-{}/bases/*.safetensors"]:
        x, y = files(pattern.format(ref_name)), files(pattern.format(name))
        if not x or x != y:
            problems.append(f"{name}: {pattern.format('*')} differ: {ref_name} {x}, {name} {y}")
    return problems


def main():
    ref_name, rounds = sys.argv[1], sys.argv[2:]
    count = len(cells(ref_name))
    problems = [] if count == 2 else [f"the uninterrupted grid exported {count} cells, expected 2"]
    for name in rounds:
        problems += differences(ref_name, name)
    if problems:
        print("kill-test: FAILED\n" + "\n".join(problems))
        sys.exit(1)
    print(f"kill-test: in each of {len(rounds)} rounds the {count} cells have the uninterrupted run's scores, "
          "epoch losses, engine peaks, predictions and base checkpoint")


if __name__ == "__main__":
    main()
