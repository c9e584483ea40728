from collections import Counter

import pytest
from django.core.management import call_command

from annotation.models import Dataset, GoldLabel, Item
from governance.services import audit_chain_verify
from portal.models import Project


@pytest.mark.django_db(transaction=True)
def test_seed_demo_fills_the_annotation_stage_with_real_disagreements_and_is_idempotent():
    call_command("seed_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115
    project = Project.objects.get(name="Support assistant (demo)")
    dataset = Dataset.objects.get(project=project)
    assert dataset.row_count == 330
    assert dataset.license == "CC0-1.0"
    states = Counter(Item.objects.filter(project=project).values_list("state", flat=True))
    assert states["resolved"] > 50
    assert states["disputed"] > 0, "some disputes still wait for the adjudicator"
    assert states["open"] > 0, "some items still wait in the annotators' queue"
    methods = Counter(
        GoldLabel.objects.filter(item__project=project).values_list("method", flat=True)
    )
    assert methods["unanimous"] > 0
    assert methods["adjudicated"] > 0

    call_command("seed_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert Dataset.objects.filter(project=project).count() == 1
    assert GoldLabel.objects.filter(item__project=project).count() == sum(methods.values())
    assert audit_chain_verify().ok
