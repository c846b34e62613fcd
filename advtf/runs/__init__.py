"""Run directories and what keeps them whole: build aside and commit, manifest, the one resume
store, the ``--out`` lock, signals and fingerprints (the bottom of advtf, above ``errors``)."""

from advtf.runs.directory import RunDir, check_writable_parent, is_advtf_run, normalised
from advtf.runs.files import (MANIFEST, markdown_table, package_versions, read_json, sha256_file, tree_hashes,
                              write_json, write_table)
from advtf.runs.lock import OutLock
from advtf.runs.resume import ResumeStore
from advtf.runs.signals import Interrupted, interruptible

__all__ = ["MANIFEST", "Interrupted", "OutLock", "ResumeStore", "RunDir", "check_writable_parent",
           "interruptible", "is_advtf_run", "markdown_table", "normalised", "package_versions", "read_json",
           "sha256_file", "tree_hashes", "write_json", "write_table"]
