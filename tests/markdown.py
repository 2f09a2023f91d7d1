"""Reading the markdown tables that the benchmark scripts print."""


def cells(output: str, first: str) -> list[str]:
    """The cells of the markdown row of ``output`` whose first cell is ``first``."""
    for line in output.splitlines():
        row = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and row[0] == first:
            return row
    raise AssertionError(f"no table row {first!r} in:\n{output}")
