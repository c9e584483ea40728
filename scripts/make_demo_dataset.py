"""Write portal/demo_data/support_instructions.jsonl: the demo's instruction/response items.

The texts are written for the demo: a help desk for "Inkwell", a fictional note-taking app.
Each intent has a reference answer and several ways a customer asks; a few drafts are
deliberately weak (too short, off-tone) so annotators have something to fix and disagree on.
Deterministic: running it twice writes the same bytes."""

import json
import random
from pathlib import Path

INTENTS = {
    ("billing", "refund"): (
        [
            "I was charged twice this month, can I get a refund?",
            "How do I get my money back for the annual plan?",
            "I cancelled yesterday but was still billed. Refund please.",
            "Can you refund the last invoice? I didn't mean to upgrade.",
            "What is your refund policy for Inkwell Pro?",
        ],
        "I'm sorry about the unexpected charge. Refunds are available within 30 days of any "
        "payment: open Settings > Billing > Invoices, choose the invoice and click 'Request "
        "refund'. The money returns to the original payment method within 5-10 business days. "
        "If you were charged twice, we refund the duplicate automatically once you confirm it "
        "there.",
    ),
    ("billing", "change_plan"): (
        [
            "How do I switch from monthly to yearly billing?",
            "I want to downgrade to the free plan.",
            "Can I move my team to the Business plan mid-cycle?",
            "How do I upgrade to Pro?",
            "What happens to my notes if I downgrade?",
        ],
        "You can change plans any time in Settings > Billing > Plan. Upgrades take effect "
        "immediately and we charge only the prorated difference; downgrades apply at the end of "
        "the current billing period. Your notes are never deleted when you downgrade: notes "
        "beyond the free plan's limits become read-only until you upgrade again or archive some.",
    ),
    ("billing", "invoice"): (
        [
            "Where can I download my invoices?",
            "I need an invoice with my company's VAT number.",
            "Can invoices be sent to our accounting email?",
            "How do I change the billing address on invoices?",
        ],
        "Invoices are in Settings > Billing > Invoices, each downloadable as a PDF. Add your "
        "company name, VAT number and billing address under 'Billing details'; they appear on "
        "every invoice issued after the change. To have invoices e-mailed to accounting, add "
        "that address as the billing contact on the same page.",
    ),
    ("account", "password_reset"): (
        [
            "I forgot my password.",
            "The password reset email never arrives.",
            "How do I change my password?",
            "My reset link says it expired.",
            "I can't log in, it says wrong password but I'm sure it's right.",
        ],
        "Go to the sign-in page and click 'Forgot password'; we e-mail a reset link that works "
        "for one hour. If it doesn't arrive within a few minutes, check your spam folder and make "
        "sure you typed the address you signed up with. An expired link can simply be requested "
        "again. Once signed in, you can change your password in Settings > Security.",
    ),
    ("account", "delete_account"): (
        [
            "How do I delete my account?",
            "Please remove all my data.",
            "I want to close my Inkwell account permanently.",
            "If I delete my account can I get it back?",
        ],
        "You can delete your account in Settings > Account > Delete account. We first ask you to "
        "export anything you want to keep, then remove your notes, attachments and personal data "
        "within 30 days; during those 30 days you can still restore the account by signing in. "
        "After that the deletion is permanent and cannot be undone.",
    ),
    ("account", "change_email"): (
        [
            "How do I change the email on my account?",
            "I no longer have access to my old work email.",
            "Can I merge two Inkwell accounts?",
        ],
        "Change your e-mail address in Settings > Account: we send a confirmation link to the new "
        "address and switch over once you click it. If you can no longer reach the old address, "
        "contact support from the new one and we will verify ownership another way. Accounts "
        "cannot be merged automatically, but you can export notes from one and import them into "
        "the other.",
    ),
    ("sync", "not_syncing"): (
        [
            "My notes aren't syncing between my phone and laptop.",
            "Changes I make on the web don't show up on iOS.",
            "Sync has been stuck on 'pending' for hours.",
            "Why do I see an old version of my note on Android?",
            "Inkwell says 'offline' even though I have internet.",
        ],
        "Sorry that sync is stuck. First make sure every device runs the latest Inkwell version "
        "and is signed in to the same account. Then open Settings > Sync and tap 'Sync now'; the "
        "status shows the last successful sync and any error. If a note still differs, Inkwell "
        "keeps both versions: look in the note's History to pick the right one. Nothing is lost "
        "while a device is offline; it uploads its changes when it reconnects.",
    ),
    ("sync", "conflict"): (
        [
            "I got a 'conflicting copy' of my note, what is that?",
            "Two of us edited the same note and now there are two notes.",
            "How do I merge conflicting note versions?",
        ],
        "A conflicting copy appears when the same note changed on two devices before they could "
        "sync. Inkwell keeps both so nothing is lost. Open both notes, copy what you need into "
        "one, and delete the other; the note's History lists every saved version if you need an "
        "older one. Shared notes edited live by several people merge automatically.",
    ),
    ("sharing", "share_note"): (
        [
            "How do I share a note with a coworker?",
            "Can I share a notebook with someone who doesn't use Inkwell?",
            "How do I give someone edit access?",
            "Can I make a note public?",
        ],
        "Open the note and click Share. Invite people by e-mail and choose 'Can view' or 'Can "
        "edit'; they need a free Inkwell account to edit. To share with anyone, turn on 'Public "
        "link': people with the link can read the note without an account, and you can turn the "
        "link off at any time. Sharing a notebook shares every note in it.",
    ),
    ("sharing", "remove_access"): (
        [
            "How do I stop sharing a note?",
            "A former employee still has access to our team notebook.",
            "Can I see who has access to my notes?",
        ],
        "Open the note or notebook and click Share: it lists everyone with access. Click the "
        "person's role and choose 'Remove' to revoke access immediately, and turn off the public "
        "link if one exists. Team admins can remove a departed member from every shared notebook "
        "at once in Settings > Team > Members.",
    ),
    ("export", "export_notes"): (
        [
            "How do I export all my notes?",
            "Can I export a notebook to PDF?",
            "I want to move my notes to another app.",
            "Is there a Markdown export?",
        ],
        "Go to Settings > Export and choose a format: Markdown (a zip with one file per note and "
        "its attachments), PDF, or Inkwell's JSON format for a complete backup. You can export "
        "everything or a single notebook. Large exports are prepared in the background and we "
        "e-mail you a download link that is valid for 7 days.",
    ),
    ("export", "import_notes"): (
        [
            "Can I import notes from Evernote?",
            "How do I import a folder of Markdown files?",
            "My imported notes lost their formatting.",
        ],
        "Use Settings > Import. Inkwell imports Evernote .enex files, folders of Markdown or "
        "plain-text files, and its own JSON backups; tags and creation dates are kept. Formatting "
        "that Inkwell doesn't support (for example custom fonts) is converted to plain text. If "
        "something looks wrong, send us one affected file and we'll take a look.",
    ),
    ("security", "two_factor"): (
        [
            "How do I turn on two-factor authentication?",
            "I lost my phone and can't get my 2FA code.",
            "Does Inkwell support security keys?",
        ],
        "Turn on two-factor authentication in Settings > Security > Two-factor: scan the QR code "
        "with an authenticator app or register a security key (WebAuthn). Save the recovery codes "
        "shown at the end. If you lose your phone, sign in with one of those recovery codes; if "
        "you have none left, contact support and we will verify your identity before resetting "
        "2FA.",
    ),
    ("security", "suspicious_login"): (
        [
            "I got an email about a login from another country.",
            "I think someone else is using my account.",
            "How do I sign out of all devices?",
        ],
        "If you don't recognise a sign-in, change your password right away in Settings > "
        "Security and click 'Sign out of all other devices'. Then turn on two-factor "
        "authentication. The Security page lists recent sign-ins with their device and "
        "approximate location so you can check whether anything else looks unfamiliar.",
    ),
    ("app", "offline"): (
        [
            "Can I use Inkwell without internet?",
            "Are my notes available offline on Android?",
            "Does the desktop app work on a plane?",
        ],
        "Yes. The desktop and mobile apps keep your notes on the device, so you can read and "
        "edit them offline; changes sync when you reconnect. On mobile, notebooks are available "
        "offline once opened, or you can mark a notebook 'Keep offline' to download all of it in "
        "advance. The web app needs a connection.",
    ),
    ("app", "attachments"): (
        [
            "What is the maximum attachment size?",
            "Why can't I attach a video?",
            "How much storage do I have?",
        ],
        "Each attachment can be up to 25 MB on the free plan and 200 MB on Pro and Business. "
        "Your total storage is shown in Settings > Account > Storage: 2 GB free, 100 GB on Pro, "
        "1 TB per member on Business. Videos larger than the limit can be linked instead of "
        "attached.",
    ),
    ("app", "search"): (
        [
            "Search doesn't find text inside my PDFs.",
            "How do I search within one notebook?",
            "Can I search handwritten notes?",
        ],
        "Search covers note text, titles and tags everywhere, and text inside PDFs and images "
        "once they have been indexed, which can take a few minutes after upload. To search one "
        "notebook, open it and use the search box at its top. Handwriting in images is "
        "recognised on Pro and Business plans.",
    ),
    ("team", "add_members"): (
        [
            "How do I add people to my team?",
            "Can I invite a contractor as a guest?",
            "How are team seats billed?",
        ],
        "Team admins invite members in Settings > Team > Members by e-mail. Each member uses a "
        "paid seat, billed prorated from the day they join. Guests can be invited to specific "
        "notebooks without a seat; they can view and comment, and can edit if you allow it.",
    ),
}

# Weak drafts an annotator should improve: terse, off-tone or wrong on a detail.
WEAK = [
    "Please check the settings.",
    "Contact support.",
    "This is not possible.",
    "Try again later.",
]
TIERS = ["free", "pro", "business"]
CHANNELS = ["email", "chat", "web form", "in-app", "social"]


def main() -> None:
    rng = random.Random(20261124)  # noqa: S311 - reproducible demo data
    rows = []
    for (domain, intent), (questions, answer) in INTENTS.items():
        for question in questions:
            for channel in CHANNELS:
                tier = rng.choice(TIERS)
                greeting = {
                    "email": "Hi, ",
                    "chat": "",
                    "web form": "Hello. ",
                    "in-app": "Quick question: ",
                    "social": "@inkwell ",
                }[channel]
                draft = answer if rng.random() > 0.2 else rng.choice(WEAK)
                rows.append(
                    {
                        "instruction": greeting + question,
                        "response": draft,
                        "domain": domain,
                        "intent": intent,
                        "customer_tier": tier,
                        "channel": channel,
                        "language": "en",
                    }
                )
    rng.shuffle(rows)
    out = Path(__file__).resolve().parent.parent / "portal" / "demo_data"
    out.mkdir(exist_ok=True)
    with open(out / "support_instructions.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(rows)} rows")


if __name__ == "__main__":
    main()
