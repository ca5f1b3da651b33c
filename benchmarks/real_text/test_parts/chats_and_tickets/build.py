"""Build the chats-and-tickets part of the third held-out real-text test set.

    python build.py [--mirrors /work/.mirror] [--out part.jsonl] [--dump] [--nolabels]

Everyday messages as they sit in the test data of chat-log, chat-export, help-desk and
mail-archive tools: IRC logs, chat exports (WhatsApp, Signal, Telegram, Slack, Mattermost,
Rocket.Chat, Gitter), help-desk ticket e-mails, and mailing-list messages. All are third-party
files in public git repositories, read from bare mirrors at pinned commits (REPOS).

Sources (the `source` field):
  irc-log         windows of consecutive lines of IRC logs (irclog2html's test cases, Perceval's
                  Supybot log of #ceph), see log_windows(); of each log's windows every other
                  one (1st, 3rd, ...), at most 6.
  chat-export     chat-export files of chat-miner's and Perceval's tests (WhatsApp/Signal text
                  exports; Telegram, Slack, Mattermost, Rocket.Chat, Gitter JSON), whole file,
                  cut to 600 characters at a line boundary.
  support-mail    the sample mails of OTRS's ticket PostMaster / EmailParser tests and of Request
                  Tracker's t/data/emails, as a ticket shows them: From/To/Cc/Subject and the
                  plain-text body (render_ticket()).
  list-mail       the plain-text body of mailing-list messages (notmuch's test corpora, Perceval's
                  mbox / pipermail / HyperKitty fixtures), quoted lines dropped (render_body()).

Text preparation (deterministic): CRLF -> LF; trailing spaces removed per line; runs of blank
lines collapsed to one; cut to <= 600 characters at a line boundary (cut_lines). Labels are all
by hand: corrections.json holds, per record id, the (value, label) pairs ("add"); each value is
then marked at EVERY occurrence (marking.mark_all).
"""

from __future__ import annotations

import email
import email.header
import json
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import marking  # noqa: E402
from marking import MAX_CHARS  # noqa: E402

# repo -> (commit, licence)
REPOS = {
    "mgedmin/irclog2html": ("50ed3ad466edf49d586d3f091fa52692f7695db2", "GPL-3.0-or-later"),
    "chaoss/grimoirelab-perceval": ("78fd47401d8f17a757186c9eb82677f617fce3f4", "GPL-3.0-or-later"),
    "joweich/chat-miner": ("17c52a1d2de81f74be29752318cf0f3b660310b9", "MIT"),
    "h4ck3rm1k3/otrs": ("c8bd2579e226a499be400afe4c1b41c6cb361cc3", "AGPL-3.0"),
    "bestpractical/rt": ("72106ba9935f3a2bab3d55572066cbfbbdc7f9ab", "GPL-2.0"),
    "notmuch/notmuch": ("fdc9c75388b1ed12662e1cdb73b48b6d809ef5d8", "GPL-3.0-or-later"),
}

GENRE = {
    "irc-log": "chat log",
    "chat-export": "chat export",
    "support-mail": "support ticket",
    "list-mail": "e-mail",
}

PV = "chaoss/grimoirelab-perceval"
PVD = "tests/data/"
# (source, repo, path, kind, lang). Order = id order within a source.
IRC = [
    ("mgedmin/irclog2html", "testcases/2005-01-08-test1.log", "en"),
    ("mgedmin/irclog2html", "testcases/2005-01-09-test2.log", "en"),
    ("mgedmin/irclog2html", "testcases/2009-01-14-dircproxy.log", "en"),
    ("mgedmin/irclog2html", "testcases/2009-01-15-dircproxy.log", "en"),
    ("mgedmin/irclog2html", "testcases/2009-01-16-dircproxy.log", "en"),
    ("mgedmin/irclog2html", "testcases/2011-01-16-hybrid-charset.log", "lt"),
    (PV, PVD + "supybot/supybot_valid.log", "en"),
]
# chat-miner's other WhatsApp files (mmddyy, mmddyyyy_12hrs, yyyymmdd) and its Telegram batch
# export repeat the same lines with another date format: near-duplicates, left out.
CHAT = [
    ("joweich/chat-miner", "test/whatsapp/test_ddmmyy_24hrs.txt", "la"),
    ("joweich/chat-miner", "test/whatsapp/test_[mmddyy]_24hrs.txt", "la"),
    ("joweich/chat-miner", "test/signal/test_export.txt", "en"),
    ("joweich/chat-miner", "test/telegram/test_single_export.json", "en"),
    ("joweich/chat-miner", "test/instagram/test_export.json", "en"),
    (PV, PVD + "slack/slack_history.json", "es"),
    (PV, PVD + "slack/slack_history_20150323.json", "es"),
    (PV, PVD + "slack/slack_user_U0001.json", "en"),
    (PV, PVD + "slack/slack_user_U0002.json", "en"),
    (PV, PVD + "slack/slack_user_U0003.json", "en"),
    (PV, PVD + "telegram/telegram_messages.json", "en"),
    (PV, PVD + "telegram/telegram_messages_next.json", "en"),
    (PV, PVD + "mattermost/mattermost_posts.json", "es"),
    (PV, PVD + "mattermost/mattermost_posts_next.json", "es"),
    (PV, PVD + "mattermost/mattermost_user_sduenas.json", "en"),
    (PV, PVD + "mattermost/mattermost_user_valcos.json", "en"),
    (PV, PVD + "rocketchat/message_page_1.json", "en"),
    (PV, PVD + "rocketchat/message_page_2.json", "en"),
    (PV, PVD + "gitter/message_page_1", "en"),
]
OTRS_DIRS = ["scripts/test/sample/EmailParser/", "scripts/test/sample/PostMaster/"]
RT_DIR = "t/data/emails/"
LIST_MBOX = [PVD + "mbox/", PVD + "pipermail/", PVD + "hyperkitty/"]
NOTMUCH = [("test/corpora/default/", 3), ("test/corpora/lkml/", 21)]  # (folder, every n-th)


# ------------------------------------------------------------------------------ reading
def git_raw(mirrors: Path, repo: str, path: str) -> bytes:
    return subprocess.run(["git", f"--git-dir={marking.git_dir(mirrors, repo)}", "show",
                           f"{REPOS[repo][0]}:{path}"], check=True, capture_output=True).stdout


def git_show(mirrors: Path, repo: str, path: str) -> str:
    return marking.git_show(mirrors, repo, REPOS[repo][0], path)


def git_ls(mirrors: Path, repo: str, path: str) -> list[str]:
    out = subprocess.run(["git", f"--git-dir={marking.git_dir(mirrors, repo)}", "ls-tree", "-r",
                          "--name-only", "-z", REPOS[repo][0], path], check=True,
                         capture_output=True).stdout.decode("utf-8")
    return sorted(p for p in out.split("\0") if p)


def tidy(lines: list[str]) -> list[str]:
    """Trailing spaces off; runs of blank lines collapsed to one; no blank lines at the ends."""
    out: list[str] = []
    for ln in lines:
        ln = ln.rstrip()
        if not ln and (not out or not out[-1]):
            continue
        out.append(ln)
    while out and not out[-1]:
        out.pop()
    return out


def cut_lines(lines: list[str]) -> str:
    """Longest prefix of whole lines <= MAX_CHARS."""
    out: list[str] = []
    for ln in lines:
        if len("\n".join(out + [ln])) > MAX_CHARS:
            break
        out.append(ln)
    text = "\n".join(out).strip("\n").rstrip()
    assert 0 < len(text) <= MAX_CHARS
    return text


def log_windows(raw: str) -> list[str]:
    """An IRC log cut into consecutive windows: lines are taken in order while the window stays
    <= MAX_CHARS; blank lines are dropped; a line longer than MAX_CHARS on its own is skipped."""
    wins, cur = [], []
    for ln in raw.split("\n"):
        ln = ln.rstrip()
        if not ln.strip() or len(ln) > MAX_CHARS:
            continue
        if cur and len("\n".join(cur + [ln])) > MAX_CHARS:
            wins.append("\n".join(cur))
            cur = []
        cur.append(ln)
    if cur:
        wins.append("\n".join(cur))
    return wins


# ------------------------------------------------------------------------------ mail
def header(msg, name: str) -> str:
    v = msg.get(name)
    if v is None:
        return ""
    try:
        v = str(email.header.make_header(email.header.decode_header(str(v))))
    except Exception:  # undecodable encoded-words stay as written
        v = str(v)
    return re.sub(r"\s+", " ", v).strip()


def plain_body(msg) -> str:
    """The first text/plain part that is not an attachment, decoded by its charset (Latin-1 where
    that fails)."""
    for part in msg.walk():
        if part.get_content_maintype() == "multipart":
            continue
        if part.get_content_type() == "text/plain" and not part.get_filename():
            payload = part.get_payload(decode=True) or b""
            try:
                return payload.decode(part.get_content_charset() or "utf-8")
            except (LookupError, UnicodeDecodeError):
                return payload.decode("latin-1")
    return ""


def render_ticket(raw: bytes) -> str:
    """From/To/Cc/Subject lines, a blank line, the plain-text body."""
    msg = email.message_from_bytes(raw)
    head = [f"{h}: {header(msg, h)}" for h in ("From", "To", "Cc", "Subject") if header(msg, h)]
    body = plain_body(msg).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return cut_lines(tidy(head + [""] + body))


def render_body(raw: bytes) -> str:
    """The plain-text body with quoted lines ('>' first) dropped."""
    msg = email.message_from_bytes(raw)
    body = plain_body(msg).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = [ln for ln in body if not ln.lstrip().startswith(">")]
    lines = tidy(lines)
    while lines and not lines[0].strip():
        lines.pop(0)
    return cut_lines(lines) if lines else ""


def mbox_messages(raw: bytes) -> list[bytes]:
    """An mbox file split at its 'From ' separator lines."""
    parts = re.split(rb"(?:^|\n)(?=From \S+(?: at \S+)? +\w{3} \w{3} +\d)", raw.replace(b"\r\n", b"\n"))
    return [p.split(b"\n", 1)[1] for p in parts if p.startswith(b"From ") and b"\n" in p]


# -------------------------------------------------------------------------------- build
def items(mirrors: Path):
    """(source, repo, path, anchor, lang, text) in id order; texts of under 40 characters are
    left out (an empty body) and exact repeats are dropped in build()."""
    for repo, path, lang in IRC:
        for i, win in list(enumerate(log_windows(git_show(mirrors, repo, path))))[::2][:6]:
            yield "irc-log", repo, path, f"w{i}", lang, win
    for repo, path, lang in CHAT:
        raw = git_show(mirrors, repo, path)
        yield "chat-export", repo, path, None, lang, cut_lines(tidy(raw.split("\n")))
    for d in OTRS_DIRS:
        for path in git_ls(mirrors, "h4ck3rm1k3/otrs", d):
            if path.endswith(".box"):
                yield ("support-mail", "h4ck3rm1k3/otrs", path, None, None,
                       render_ticket(git_raw(mirrors, "h4ck3rm1k3/otrs", path)))
    for path in git_ls(mirrors, "bestpractical/rt", RT_DIR):
        if not path.endswith("/dir"):
            yield ("support-mail", "bestpractical/rt", path, None, None,
                   render_ticket(git_raw(mirrors, "bestpractical/rt", path)))
    for d in LIST_MBOX:
        for path in git_ls(mirrors, PV, d):
            if path.endswith(".mbox"):
                for i, m in enumerate(mbox_messages(git_raw(mirrors, PV, path))):
                    yield "list-mail", PV, path, f"msg{i}", None, render_body(m)
    for d, every in NOTMUCH:
        for path in git_ls(mirrors, "notmuch/notmuch", d)[::every]:
            yield ("list-mail", "notmuch/notmuch", path, None, None,
                   render_body(git_raw(mirrors, "notmuch/notmuch", path)))


def build(mirrors: Path, labels: bool = True) -> list[dict]:
    corrections = json.loads((HERE / "corrections.json").read_text(encoding="utf-8")) if labels else None
    return marking.numbered_records((item for item in items(mirrors) if len(item[-1]) >= 40), REPOS, GENRE, corrections)


if __name__ == "__main__":
    sys.exit(marking.part_command(build, HERE))
