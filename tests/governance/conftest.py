import pytest


@pytest.fixture(autouse=True)
def _own_checkpoint_dir(settings, tmp_path):
    """A checkpoint file outlives the database state of the test that signed it: each test
    gets its own, or a later test's chain would be held to an earlier test's checkpoint."""
    settings.PORTAL_AUDIT_CHECKPOINT_DIR = tmp_path / "audit_checkpoints"
