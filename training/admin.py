"""Admin registrations for the training app."""
