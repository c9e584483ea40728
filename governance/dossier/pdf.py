"""HTML to PDF with WeasyPrint, fetching nothing: every resource the report needs is inline,
so any file:// or network URL in the HTML (from user-entered text, say) is refused."""

from weasyprint import HTML
from weasyprint.urls import URLFetcher


class RefuseEveryFetch(URLFetcher):
    """WeasyPrint calls this for every URL it meets; the dossier must not read local files
    or reach the network while it is rendered."""

    def fetch(self, url, headers=None):
        raise ValueError(f"the dossier renderer fetches nothing (refused {url[:80]})")


def html_to_pdf(html: str, *, identifier: str) -> bytes:
    """Deterministic bytes: a fixed PDF identifier, and dates only from the HTML's own
    dcterms meta tags (never the clock)."""
    document = HTML(string=html, url_fetcher=RefuseEveryFetch(), base_url=None)
    return document.write_pdf(pdf_identifier=identifier.encode("utf-8")[:64] or b"dossier")
