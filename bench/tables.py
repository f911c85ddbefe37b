"""The small tables of the bench's extra sections (overload, authentication): Markdown and the terminal."""

from __future__ import annotations


def num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def markdown(columns: list[str], body: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(b) + " |" for b in body),
    ]


def section(title: str, text: str, *blocks: tuple[list[str], list[list[str]]]) -> list[str]:
    """A report section: its title, what it measures, and one table per (columns, body)."""
    lines = [title, "", text, ""]
    for columns, body in blocks:
        lines += [*markdown(columns, body), ""]
    return lines


def show(
    title: str, columns: list[str], body: list[list[str]], caption: str | None = None, right_from: int = 99
) -> None:
    """Print a table on the terminal; columns from ``right_from`` on are right-aligned (figures)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, caption=caption)
    for i, c in enumerate(columns):
        table.add_column(c, justify="right" if i >= right_from else "left")
    for b in body:
        table.add_row(*b)
    Console(width=240).print(table)
