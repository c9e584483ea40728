"""Every write of the serving app: deployments and their keys (here), engines
(`engines`), telemetry (`telemetry`), feedback and the canary's rules (`rollout`)."""
