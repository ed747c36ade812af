"""Signed software updates (docs/updates.md).

- `bundle`: a release bundle — wheels plus a manifest signed with Ed25519 — built, signed
  and verified.
- `fetch`: the download, resumable and bounded in size and time, with progress.
- `slots`: release slots under the update root, the `current` and `good` links, the update
  record and the start guard that rolls back a release that crashes before judging itself.
- `service`: `device/update` and the probation watch as the supervisor runs them; the
  decision itself is pure, in `edgelive.policy.probation`.
"""
