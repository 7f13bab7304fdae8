"""Which code produced a table row: a fingerprint of the package sources and the commit they were checked out at.

A results line is reused only when both its config hash and its code fingerprint equal the current ones, so a
number computed by other code is never passed off as current (docs/tables.md, "Interrupting, resuming,
recomputing").
"""
from __future__ import annotations

import hashlib
import subprocess
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
REPOSITORY = PACKAGE.parent
# The table layer (``<package>/tables``) resolves configs (their hash covers that) and writes results; it computes
# no number, so editing how a table is printed does not make every row stale.
PRESENTATION = "tables"
# What decides a row's numbers besides its config: the package and the experiment files.
CODE_PATHS = ("retrieval", "experiments")
UNCOMMITTED = "+uncommitted"


def code_fingerprint(package: Path = PACKAGE) -> str:
    """A 12-hex digest of every ``.py`` file of ``package`` outside ``tables/`` (relative path and bytes)."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package).parts
        if relative[0] == PRESENTATION or "__pycache__" in relative:
            continue
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def _git(*args: str, root: Path) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30,
                              check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def code_commit(root: Path = REPOSITORY) -> str:
    """``HEAD``'s commit id, with ``+uncommitted`` when a file under ``retrieval/`` or ``experiments/`` differs
    from it (changed, staged or new); empty outside a git checkout. Results files are not code: rewriting them
    during a run does not make the commit dirty."""
    head = _git("rev-parse", "HEAD", root=root)
    if not head:
        return ""
    changes = _git("status", "--porcelain", "--untracked-files=all", "--", *CODE_PATHS, root=root)
    return head.strip() + (UNCOMMITTED if changes is None or changes.strip() else "")


@cache
def current_code() -> tuple[str, str]:
    """``(fingerprint, commit)`` of the code this process runs, computed once per process."""
    return code_fingerprint(), code_commit()


def committed_text(path: Path, ref: str = "HEAD") -> str | None:
    """The text of ``path`` as committed at ``ref`` in the git repository that holds it (None when there is no
    repository or no such file at ``ref``)."""
    path = Path(path)
    return _git("show", f"{ref}:./{path.name}", root=path.parent) if path.parent.is_dir() else None
