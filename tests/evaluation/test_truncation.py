import json
import re
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from django.conf import settings
from django.urls import reverse
from rest_framework.test import APIClient
from transformers import AutoTokenizer

from evaluation import services
from evaluation.models import Generation, Judgment
from tests.evaluation.factories import contestant_with_outputs, prompt_rows
from training.ml.generation import stopped_at_limit
from training.services import base_model_register

pytestmark = pytest.mark.django_db

EOS, PAD = 3, 0


def test_rows_without_an_end_token_at_the_limit_are_truncated():
    batch = torch.tensor([[7, 8, EOS, PAD], [7, 8, 9, 10], [7, EOS, EOS, EOS]])

    assert stopped_at_limit(batch, stop_ids={EOS}, max_new_tokens=4) == [False, True, False]
    # Every row ended before the limit: the batch is shorter than it.
    assert stopped_at_limit(batch, stop_ids={EOS}, max_new_tokens=5) == [False, False, False]


def _generate(engineer, project, model_dir: Path, name: str, max_new_tokens: int):
    base = base_model_register(
        actor=None, project=project, name=name, source="local", path=str(model_dir)
    )
    prompt_set = services.prompt_set_create(
        actor=engineer, project=project, name=f"{name} prompts", rows=prompt_rows(3)
    )
    contestant = services.contestant_create(
        actor=engineer, project=project, label=name, base_model=base
    )
    job = services.generation_job_start(
        actor=engineer,
        contestant=contestant,
        prompt_set=prompt_set,
        max_new_tokens=max_new_tokens,
        batch_size=2,
    )
    services.prompts.generation_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    return list(Generation.objects.filter(job=job).values_list("truncated", flat=True))


def test_a_generation_job_records_which_outputs_hit_the_token_limit(
    project, engineer, tiny_model_dir
):
    # The random tiny model never says its end token: every answer runs to the limit.
    assert _generate(engineer, project, tiny_model_dir, "tiny", 4) == [True, True, True]

    # The same weights with the character it always writes first as the end token: every
    # answer ends at once, well inside the limit.
    copy = Path(tempfile.mkdtemp(dir=settings.TRAINING_MODEL_ROOTS[0])) / "tiny-stops"
    shutil.copytree(tiny_model_dir, copy)
    newline = AutoTokenizer.from_pretrained(copy).convert_tokens_to_ids("\n")
    config = json.loads((copy / "generation_config.json").read_text())
    (copy / "generation_config.json").write_text(json.dumps({**config, "eos_token_id": newline}))
    assert _generate(engineer, project, copy, "tiny-stops", 4) == [False, False, False]


@pytest.fixture
def cut_campaign(project, engineer):
    """Two contestants on six prompts; the first one's answers were all cut."""
    prompt_set = services.prompt_set_create(
        actor=engineer, project=project, name="p", rows=prompt_rows(6)
    )
    long = contestant_with_outputs(
        engineer, project, prompt_set, "long", [f"A long answer {i} that" for i in range(6)]
    )
    short = contestant_with_outputs(
        engineer, project, prompt_set, "short", [f"Short answer {i}." for i in range(6)]
    )
    Generation.objects.filter(job__contestant=long).update(truncated=True)
    campaign = services.campaign_create(
        actor=engineer,
        project=project,
        name="cut",
        prompt_set=prompt_set,
        contestants=[long, short],
        attention_every=0,
    )
    return campaign, long


def test_the_reviewer_sees_truncated_on_the_cut_side_only_and_alike(
    client, project, reviewer, cut_campaign
):
    campaign, long = cut_campaign
    client.force_login(reviewer)
    url = reverse("evaluation:review", args=[project.pk, campaign.pk])
    submit = reverse("evaluation:review_submit", args=[project.pk, campaign.pk])
    page = client.get(url).content.decode()
    marks = set()
    for _ in range(6):
        token = re.search(r'name="token" value="([^"]+)"', page).group(1)
        judgment = Judgment.objects.get(token=token)
        cut_side = "a" if judgment.contestant_left_id == long.pk else "b"
        other = "b" if cut_side == "a" else "a"
        mark = re.search(rf'<p [^>]*data-testid="truncated-{cut_side}">[^<]*</p>', page)
        assert mark is not None
        assert f'data-testid="truncated-{other}"' not in page
        marks.add(mark.group(0).replace(f"truncated-{cut_side}", "truncated-?"))
        page = client.post(
            submit, {"token": token, "outcome": "tie"}, HTTP_HX_REQUEST="true"
        ).content.decode()
    # Whichever side the cut answer sat on, the mark read the same.
    assert len(marks) == 1
    assert ">(truncated)<" in marks.pop()
    assert campaign.battles.filter(truncated_x=True, truncated_y=False).count() == 6


def test_the_api_pair_says_which_side_was_cut(project, reviewer, cut_campaign):
    campaign, long = cut_campaign
    api = APIClient()
    api.force_authenticate(reviewer)

    pair = api.get(reverse("evaluation-api:api-review-next", args=[project.pk, campaign.pk])).json()

    judgment = Judgment.objects.get(token=pair["token"])
    left_is_long = judgment.contestant_left_id == long.pk
    assert (pair["truncated_a"], pair["truncated_b"]) == (left_is_long, not left_is_long)
