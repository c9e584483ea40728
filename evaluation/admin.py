"""Admin registrations for the evaluation app."""
