"""Pages for compliance staff: audit log, approvals and dossiers."""
