"""Api for datasets and provenance, items, label schemas, guidelines, leased assignments,
annotations, agreement, adjudication, snapshots and exports.
"""
