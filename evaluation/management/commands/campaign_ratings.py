"""`python manage.py campaign_ratings CAMPAIGN`: the ratings table of a campaign (by id or
name), as the results page shows it."""

from django.core.management.base import BaseCommand, CommandError

from evaluation import selectors
from evaluation.models import Campaign


def _interval(lo, hi) -> str:
    return "—" if lo is None else f"{lo:7.1f} – {hi:7.1f}"


class Command(BaseCommand):
    help = "Print a campaign's Bradley–Terry ratings with 95% intervals."

    def add_arguments(self, parser):
        parser.add_argument("campaign", help="campaign id or exact name")

    def handle(self, *args, campaign: str, **options):
        found = Campaign.objects.filter(name=campaign)
        if campaign.isdigit():
            found = Campaign.objects.filter(pk=int(campaign)) | found
        matches = list(found.select_related("prompt_set")[:2])
        if not matches:
            raise CommandError(f"No campaign with id or name {campaign!r}.")
        if len(matches) > 1:
            raise CommandError(f"{campaign!r} names more than one campaign; use its id.")
        results = selectors.campaign_results(campaign=matches[0])
        width = max([len(r.label) for r in results.rows] + [10])
        self.stdout.write(
            f"{matches[0].name}: {results.judgments} judgments, "
            f"{results.excluded_raters} rater(s) excluded"
        )
        self.stdout.write(
            f"{'#':>2}  {'contestant':<{width}}  {'rating':>7}  {'95% (sandwich)':>17}  "
            f"{'95% (bootstrap)':>17}  {'judgments':>9}"
        )
        for n, r in enumerate(results.rows, start=1):
            self.stdout.write(
                f"{n:>2}  {r.label:<{width}}  {r.rating:7.1f}  {_interval(r.lower, r.upper):>17}  "
                f"{_interval(r.boot_lower, r.boot_upper):>17}  {r.judgments:>9}"
            )
        bias = results.position_bias
        if bias.trials:
            self.stdout.write(
                f"position bias: left won {bias.share:.3f} of {bias.trials} decisive judgments "
                f"(95% {bias.lower:.3f} – {bias.upper:.3f})"
            )
