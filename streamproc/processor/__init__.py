"""The stream processor: intake, scoring within budgets and deadlines, outputs, commits."""
