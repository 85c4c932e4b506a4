"""CV setpoints: the spec's, with the operator's over them, checked once where they enter.

    sp = Setpoints.resolve(spec, {"T": 330.0})   # TwinError naming the tag if one is wrong
    controller.recommend(history, sp)            # used as is: not merged or checked again

The command line (and :func:`twin.loop.run.run_loop` for callers of the library) resolves the
setpoints once; everything downstream (the loop's steps, the controller, a failed
recommendation's record) takes the :class:`Setpoints` it is handed. A plain mapping given to
the controller is resolved there, so the library stays easy to call; the controller allows a
setpoint beyond its CV's limits (``within_limits=False``: its soft limit terms hold the CV
near the limit), the command line and the what-if do not.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping

from twin.errors import TwinError
from twin.spec import PlantSpec


def check_setpoint(spec: PlantSpec, tag: str, value: float, *, within_limits: bool = True) -> None:
    """TwinError unless ``tag`` is a CV of ``spec`` and ``value`` a finite number in its limits.

    ``within_limits=False`` (the controller's check) lets a finite value beyond the limits pass.
    """
    cvs = [t.name for t in spec.cvs]
    if tag not in spec.tag_names:
        raise TwinError(
            f"setpoint {tag}={value:g}: plant {spec.name!r} has no tag {tag!r} (CVs: {cvs})"
        )
    t = spec.tag(tag)
    if t.role != "cv":
        raise TwinError(
            f"setpoint {tag}={value:g}: {tag!r} is an {t.role.upper()}, not a CV; setpoints "
            f"are for the CVs {cvs}"
        )
    if not within_limits:
        if not math.isfinite(value):
            raise TwinError(f"setpoint of {tag!r} must be finite, got {value}")
        return
    if not math.isfinite(value) or not t.lo <= value <= t.hi:
        raise TwinError(
            f"setpoint {tag}={value:g} {t.unit} is outside the limits of {tag!r} "
            f"[{t.lo:g}, {t.hi:g}] {t.unit}"
        )


class Setpoints(Mapping[str, float]):
    """CV -> setpoint of one plant: the spec's defaults with the given values over them.

    Only :meth:`resolve` builds one, after checking every given value; a CV with no setpoint
    in the spec and none given is absent. ``within_limits``: every value was checked against
    its CV's limits (the command line's check; the controller's own allows values beyond them).
    """

    def __init__(
        self,
        plant: str,
        values: Mapping[str, float],
        *,
        within_limits: bool = True,
        _checked: object = None,
    ):
        if _checked is not _RESOLVED:
            raise TypeError("build Setpoints with Setpoints.resolve(spec, given)")
        self.plant = plant
        self.within_limits = within_limits
        self._values = dict(values)

    @classmethod
    def resolve(
        cls,
        spec: PlantSpec,
        given: Mapping[str, float] | Iterable[tuple[str, float]] | None = None,
        *,
        within_limits: bool = True,
    ) -> Setpoints:
        """The spec's setpoints with ``given`` over them, each given one checked.

        ``given`` may be a mapping or ``(tag, value)`` pairs in the order they were given (as
        the command line's repeated ``--setpoint``): every pair is checked, the last one wins.

        ``given`` that is already a :class:`Setpoints` of this plant is returned as it is
        (unless ``within_limits`` asks for a check it did not have: then it is checked again).
        ``within_limits=False`` accepts a finite setpoint beyond its CV's limits: the
        controller's soft limit terms then hold the CV near the limit.
        """
        if (
            isinstance(given, Setpoints)
            and given.plant == spec.name
            and (given.within_limits or not within_limits)
        ):
            return given
        values = {t.name: float(t.setpoint) for t in spec.cvs if t.setpoint is not None}
        pairs = given.items() if isinstance(given, Mapping) else given or ()
        for tag, raw in pairs:
            try:
                value = float(raw)
            except (TypeError, ValueError):
                raise TwinError(f"setpoint of {tag!r} is not a number: {raw!r}") from None
            check_setpoint(spec, tag, value, within_limits=within_limits)
            values[tag] = value
        return cls(spec.name, values, within_limits=within_limits, _checked=_RESOLVED)

    def __getitem__(self, tag: str) -> float:
        return self._values[tag]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Setpoints({self.plant!r}, {self._values!r})"


_RESOLVED = object()
