"""Lab-independent grading machinery: notebook -> module, sandboxed worker, load, scoring, scorecard, report."""
