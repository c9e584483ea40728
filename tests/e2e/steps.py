"""Browser steps that more than one test takes the same way: the per-role tests and the
whole journey share them, so a change to a page is mended in one place."""

from pathlib import Path

from playwright.sync_api import Locator, Page, expect

from tests.portal.factories import MembershipFactory, UserFactory


def member(project, role: str, username: str):
    """A new user holding `role` in `project`."""
    user = UserFactory(username=username)
    MembershipFactory(project=project, role=role, user=user)
    return user


def dossier_build_download_verify(page: Page, saved: Path, *, timeout: int) -> Locator:
    """On a model version's compliance page: build the dossier, download it to `saved`,
    and upload it to the verifier; returns the verifier's result, already verified."""
    page.get_by_test_id("build-dossier").click()
    expect(page.get_by_test_id("dossier-status")).to_have_text("Succeeded", timeout=timeout)
    with page.expect_download() as download_info:
        page.get_by_test_id("download-dossier").click()
    download_info.value.save_as(saved)
    page.get_by_role("link", name="Verify a dossier").click()
    page.get_by_test_id("verify-file").set_input_files(str(saved))
    page.get_by_test_id("verify-submit").click()
    result = page.get_by_test_id("verify-result")
    expect(result).to_contain_text(f"Verified: {saved.name}")
    return result


def rating_gate_create_and_run(
    page: Page, *, name: str, campaign: str, candidate: str, baseline: str
) -> Locator:
    """On a project's evaluation page: a gate with one rating-above-baseline check on
    `campaign`, run once for `candidate` against `baseline`; returns the run's row."""
    form = page.get_by_test_id("gate-form")
    form.get_by_label("Name").fill(name)
    form.get_by_label("Check 1: kind", exact=True).select_option("rating_above_baseline")
    form.get_by_label("Check 1: campaign", exact=True).select_option(label=campaign)
    form.get_by_test_id("create-gate").click()
    expect(page.get_by_test_id("gates")).to_contain_text(name)
    form = page.get_by_test_id("gate-run-form")
    form.get_by_label("Gate").select_option(label=name)
    form.get_by_label("Candidate").select_option(label=candidate)
    form.get_by_label("Baseline").select_option(label=baseline)
    form.get_by_test_id("run-gate").click()
    runs = page.get_by_test_id("gate-run")
    expect(runs).to_have_count(1)
    return runs
