"""Governance writes: approvals and sign-offs, dossiers, retention and key rotation."""
