"""Admin registrations for the annotation app."""
