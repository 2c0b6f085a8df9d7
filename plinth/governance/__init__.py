"""Governance as code: the policies (policies/, one module per theme), their offline runner (check.py) and
the compliance report (report.py); the real engine runs the same policies from policies/ (a Pulumi policy
pack)."""
