"""CLI tests; `one_line_error` is the check every command's bad input must pass."""


def one_line_error(output: str) -> str:
    """The single `error: ...` line a bad input prints on stderr (no traceback, nothing else)."""
    lines = output.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got: {output!r}"
    assert lines[0].startswith("error: ") and "Traceback" not in output
    return lines[0]
