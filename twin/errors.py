"""The project's error hierarchy: one base, one type per place where bad input enters."""

from __future__ import annotations


class TwinError(Exception):
    """Base of every error this project raises on purpose."""


class SpecError(TwinError, ValueError):
    """A plant spec is wrong. The message names the file, the tag and the field."""

    def __init__(
        self,
        message: str,
        *,
        file: str = "<spec>",
        tag: str | None = None,
        field: str | None = None,
    ) -> None:
        self.file = file
        self.tag = tag
        self.field = field
        self.reason = message
        where = [file]
        if tag is not None:
            where.append(f"tag {tag!r}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{': '.join(where)}: {message}")


class DataQualityError(TwinError, ValueError):
    """Data read or received is unusable (NaN where a value is required, corrupt file, bad schema)."""


class ConnectorError(TwinError, ConnectionError):
    """Talking to the outside failed: an OPC-UA server, a file export, a plant."""


class SimulationError(TwinError, RuntimeError):
    """A simulated plant cannot go on, e.g. a thermal runaway or a failed integration step."""
