"""The audit trail of anonymize runs, kept beside the release folder, never inside it.

``OUTPUT/`` holds only anonymized images (what you publish). ``OUTPUT.anonlens-audit/`` (or
``--audit DIR``) holds what links the release back to the originals and must stay private:

- ``manifest.json``: the latest run's manifest (every image: input path, hashes, regions, options);
- ``runs/<run id>.json``: every run's manifest, never overwritten (the run history);
- ``history.jsonl``: one line per finished run (id, mode, time, counts);
- ``run.json`` and ``journal.jsonl``: the run in progress (what ``--resume`` continues);
- ``assessment/``: the scores of ``anonymize --assess``.

A second run into the same output folder is refused while one runs (an exclusive lock), and
refused afterwards unless ``--resume`` (same options, outputs re-verified against their hashes)
or ``--overwrite``.
"""

from .layout import AUDIT_SUFFIX, AuditLayout, AuditWriteError, default_audit_dir, dumps_strict, find_manifest, strict_json
from .lock import OutputLock, OutputLockedError
from .runs import Journal, PriorRun, RunRefused, diff_options, load_prior, options_fingerprint, plan_start

__all__ = [
    "AUDIT_SUFFIX",
    "AuditLayout",
    "AuditWriteError",
    "Journal",
    "OutputLock",
    "OutputLockedError",
    "PriorRun",
    "RunRefused",
    "default_audit_dir",
    "diff_options",
    "dumps_strict",
    "find_manifest",
    "load_prior",
    "options_fingerprint",
    "plan_start",
    "strict_json",
]
