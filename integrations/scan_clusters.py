"""DeepCore's clustering over one Hub scan: the repos checked against a DeepCore entry, sorted into its cluster or not.

Workers keep only each suspect's distance to the owner on the core points (``evidence["owner_distance"]``), so the
batch is clustered after the models are gone, and repos resumed from the scan state take part like fresh ones.
"""
from __future__ import annotations

from typing import Any

DISTANCE = "owner_distance"


def add_owner_distance(verdict: Any, fp: Any, model: Any, suspect: str) -> None:
    """Store the suspect's distance to the owner in a DeepCore verdict's evidence (other methods: nothing)."""
    from fp_registry.algorithms.clustering import owner_distances
    from fp_registry.suspect import Suspect

    if fp.method == "deepcore" and verdict.status == "checked":
        verdict.evidence[DISTANCE] = owner_distances(fp, [Suspect(model, suspect)])[0]


def reference_distances(entries: list[Any], fingerprints: dict[str, Any], references: list[Any]) -> dict[str, Any]:
    """Per DeepCore entry id, the references' distances to its owner. Computed before the scan starts, so a
    reference that does not fit an entry fails at once, not after every repo was checked."""
    from fp_registry.algorithms.clustering import owner_distances

    return {e.entry_id: owner_distances(fingerprints[e.entry_id], list(references)) for e in entries
            if fingerprints[e.entry_id].method == "deepcore"}


def cluster_scan(references: dict[str, list[float]], results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per DeepCore entry id (the keys of :func:`reference_distances`): its
    :class:`~fp_registry.algorithms.clustering.ClusterResult` as a dict, keyed by repo.

    Repos checked against the entry without a distance (by a scan run without ``--cluster``) are counted in
    ``without_distance`` and left out: they were never embedded.
    """
    from fp_registry.algorithms.clustering import cluster_distances

    out: dict[str, dict[str, Any]] = {}
    for entry_id, refs in references.items():
        found, missing = _distances(entry_id, results)
        result = cluster_distances(found, refs).to_dict() if found else {
            "in_owner_cluster": {}, "distances": {}, "n_references": len(refs), "references_in_owner_cluster": 0,
            "note": "no repo was checked against this entry"}
        out[entry_id] = {**result, "without_distance": missing}
    return out


def _distances(entry_id: str, results: list[dict[str, Any]]) -> tuple[dict[str, float], int]:
    """Distances of the repos checked against ``entry_id`` (one per repo), and how many checked ones had none."""
    found, missing = {}, 0
    for row in results:
        for v in row.get("verdicts", []):
            if v.get("entry_id") != entry_id or v.get("verdict") not in ("match", "clean"):
                continue
            distance = (v.get("evidence") or {}).get(DISTANCE)
            if distance is None:
                missing += 1
            else:
                found[row["repo"]] = float(distance)
    return found, missing


def in_owner_cluster(clusters: dict[str, dict[str, Any]]) -> list[str]:
    """Repos that some DeepCore entry's clustering puts in the owner's cluster."""
    return sorted({repo for c in clusters.values() for repo, inside in c["in_owner_cluster"].items() if inside})


def cluster_lines(clusters: dict[str, dict[str, Any]]) -> list[str]:
    """Plain text for the scan's table output."""
    lines = []
    for entry_id, c in clusters.items():
        lines.append(f"clustering for {entry_id} ({c['n_references']} reference model(s)):")
        lines += [f"  {repo}: {'OWNER CLUSTER (piracy)' if inside else 'other cluster'}"
                  for repo, inside in c["in_owner_cluster"].items()]
        if c["without_distance"]:
            lines.append(f"  note: {c['without_distance']} repo(s) checked by a scan without --cluster were left out; "
                         "rescan with a new --state to include them")
        if c["note"]:
            lines.append(f"  note: {c['note']}")
    return lines
