"""Spec errors: every one names the file, line, column and field path."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Loc:
    """A position in a YAML file (1-based line and column)."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class SpecError:
    loc: Loc | None
    path: str
    """Field path in the merged spec, e.g. teams[fraud].quota.gpu ('' for the document)."""
    message: str
    rule: str | None = None
    """Name of the cross-field rule that failed (None for schema errors)."""
    fix: str | None = None

    def __str__(self) -> str:
        where = f"{self.loc}: " if self.loc else ""
        field = f"{self.path}: " if self.path else ""
        extra = ""
        if self.rule:
            extra = f" [rule {self.rule}" + (f"; fix: {self.fix}" if self.fix else "") + "]"
        return f"{where}{field}{self.message}{extra}"


@dataclass(frozen=True)
class Violation:
    """A cross-field rule's finding: `loc` is a path of YAML keys and list indexes into the merged spec,
    mapped back to file:line:col by the loader."""

    loc: tuple
    message: str
    rule: str
    fix: str


class SpecInvalid(Exception):
    """Raised with ALL the errors found; the CLI prints them and exits 2."""

    def __init__(self, errors: list[SpecError]):
        self.errors = sorted(errors, key=lambda e: (e.loc or Loc("", 0, 0), e.path))
        super().__init__("\n".join(str(e) for e in self.errors))

    def __reduce__(self):
        # Raised in a process that plans one side of `plinth diff`, re-raised in the CLI's: rebuilt from its errors.
        return SpecInvalid, (self.errors,)
