"""License check for a model version: every upstream license (datasets, base model) against
the version's declared license and intended use. A short, explicit table: a license not in
it is reported as needing review rather than guessed at."""

from dataclasses import asdict, dataclass

PERMISSIVE = {
    "apache-2.0",
    "mit",
    "bsd-2-clause",
    "bsd-3-clause",
    "isc",
    "cc0-1.0",
    "unlicense",
    "cc-by-3.0",
    "cc-by-4.0",
    "odc-by-1.0",
    "pddl-1.0",
    "zlib",
}
SHARE_ALIKE = {"cc-by-sa-3.0", "cc-by-sa-4.0", "odbl-1.0", "gpl-3.0", "agpl-3.0", "lgpl-3.0"}
NON_COMMERCIAL = {
    "cc-by-nc-3.0",
    "cc-by-nc-4.0",
    "cc-by-nc-sa-3.0",
    "cc-by-nc-sa-4.0",
    "cc-by-nc-nd-4.0",
}
NO_DERIVATIVES = {"cc-by-nd-4.0", "cc-by-nc-nd-4.0"}
NEEDS_AGREEMENT = {"proprietary", "other", "llama2", "llama3", "llama3.1", "gemma"}


@dataclass(frozen=True)
class LicenseFinding:
    source: str  # "dataset <name>" / "base model <name>"
    license: str
    severity: str  # "ok" | "warning" | "conflict"
    message: str

    def as_dict(self) -> dict:
        return asdict(self)


def _family(spdx: str) -> str:
    key = (spdx or "").strip().lower()
    if key in NO_DERIVATIVES:
        return "no-derivatives"
    if key in NON_COMMERCIAL:
        return "non-commercial"
    if key in SHARE_ALIKE:
        return "share-alike"
    if key in PERMISSIVE:
        return "permissive"
    if key in NEEDS_AGREEMENT:
        return "agreement"
    return "unknown"


def license_check(
    *, upstream: list[tuple[str, str]], declared: str | None, commercial_use: bool | None
) -> list[LicenseFinding]:
    """`upstream` is [(source, license)]. `declared` None: no use declaration was made,
    which is itself reported, since nothing can be checked against it."""
    findings = []
    declared_key = (declared or "").strip().lower()
    for source, spdx in sorted(upstream):
        family = _family(spdx)
        severity, message = "ok", "compatible"
        if not spdx:
            severity, message = "warning", "no license recorded"
        elif family == "no-derivatives":
            severity, message = "conflict", "forbids derivatives; a trained model is one"
        elif family == "non-commercial" and commercial_use:
            severity, message = "conflict", "non-commercial, but the declared use is commercial"
        elif family == "non-commercial" and commercial_use is None:
            severity, message = "warning", "non-commercial; no intended use has been declared"
        elif family == "share-alike" and declared_key and declared_key != spdx.strip().lower():
            severity = "warning"
            message = f"share-alike: derivatives may have to carry {spdx}, not {declared}"
        elif family == "agreement":
            severity, message = "warning", "governed by its own agreement: check its terms"
        elif family == "unknown":
            severity, message = "warning", f"{spdx!r} is not in the portal's license table"
        findings.append(LicenseFinding(source, spdx or "", severity, message))
    if declared is None:
        findings.append(
            LicenseFinding("model version", "", "warning", "no license or intended use declared")
        )
    return findings
