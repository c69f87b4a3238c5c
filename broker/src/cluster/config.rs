//! `--metadata` and `--objects`: parsing and checking the cluster-mode settings.
