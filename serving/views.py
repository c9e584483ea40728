"""Pages of the serving app (deployments, their keys, live charts)."""
