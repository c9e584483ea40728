"""The portal's REST API for deployments and their keys (not the gateway: see gateway)."""
