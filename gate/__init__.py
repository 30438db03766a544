"""The promotion gate: its rules, the holdout it judges on, behavioural tests, the audit log and the champion's copy."""
