"""Planar arc splines: the road, corridor or track every domain is laid out along."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _advance(
    xy0: np.ndarray, psi0: np.ndarray, kappa: np.ndarray, t: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Move ``t`` metres from (xy0 (..., 2), heading psi0) on a circle of curvature kappa."""
    psi = psi0 + kappa * t
    straight = kappa == 0.0
    k = np.where(straight, 1.0, kappa)
    dx = np.where(straight, t * np.cos(psi0), (np.sin(psi) - np.sin(psi0)) / k)
    dy = np.where(straight, t * np.sin(psi0), (np.cos(psi0) - np.cos(psi)) / k)
    return xy0 + np.stack([dx, dy], axis=-1), psi


@dataclass(frozen=True)
class Path:
    """Straight lines and circular arcs in the world xy plane, joined with continuous heading.

    Parametrised by arc length ``s`` (metres); the path starts at the origin heading +x. Arrays
    have shape (M,) for M segments; ``curvature`` is 1/m, positive turning left (counter-
    clockwise seen from above, z up).
    """

    s0: np.ndarray
    length: np.ndarray
    curvature: np.ndarray
    xy0: np.ndarray  # (M, 2)
    heading0: np.ndarray

    @staticmethod
    def from_segments(lengths: list[float], curvatures: list[float]) -> Path:
        """Chain segments end to end (closed form, so a prefix never depends on what follows)."""
        length = np.asarray(lengths, dtype=np.float64)
        curvature = np.asarray(curvatures, dtype=np.float64)
        xy0, heading0 = np.zeros((len(length), 2)), np.zeros(len(length))
        for i in range(1, len(length)):
            xy0[i], heading0[i] = _advance(
                xy0[i - 1], heading0[i - 1], curvature[i - 1], length[i - 1]
            )
        s0 = np.concatenate([[0.0], np.cumsum(length)[:-1]])
        return Path(s0, length, curvature, xy0, heading0)

    @property
    def end(self) -> float:
        return float(self.s0[-1] + self.length[-1])

    def pose(self, s: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Point (..., 2) and heading (...,) rad at arc length s (extrapolated past the ends)."""
        s = np.asarray(s, dtype=np.float64)
        i = np.clip(np.searchsorted(self.s0, s, side="right") - 1, 0, len(self.s0) - 1)
        return _advance(self.xy0[i], self.heading0[i], self.curvature[i], s - self.s0[i])

    def select(self, keep: np.ndarray) -> Path:
        """The segments where ``keep`` (M,) is true (used to limit texture look-ups)."""
        return Path(
            self.s0[keep],
            self.length[keep],
            self.curvature[keep],
            self.xy0[keep],
            self.heading0[keep],
        )

    def local(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Path coordinates of points xy (P, 2): arc length s (P,) and lateral offset (P,),
        left positive, both in metres, taken from the nearest segment."""
        best_s = np.zeros(len(xy))
        best_lat = np.zeros(len(xy))
        best_cost = np.full(len(xy), np.inf)
        for m in range(len(self.s0)):  # a running minimum: no (P, M) temporaries
            s_loc, lat = self._local_in(m, xy)
            cost = np.abs(lat) + np.maximum(np.maximum(-s_loc, s_loc - self.length[m]), 0.0)
            better = cost < best_cost  # strict: ties keep the first segment, as argmin would
            best_cost[better] = cost[better]
            best_s[better] = self.s0[m] + s_loc[better]
            best_lat[better] = lat[better]
        return best_s, best_lat

    def _local_in(self, m: int, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Arc length from the start of segment m and lateral offset of points xy (P, 2)."""
        px, py = xy[:, 0] - self.xy0[m, 0], xy[:, 1] - self.xy0[m, 1]
        c, sn, k = np.cos(self.heading0[m]), np.sin(self.heading0[m]), self.curvature[m]
        along = px * c + py * sn
        left = -px * sn + py * c
        if k == 0.0:
            return along, left
        # arcs: centre at 1/k to the left; angle swept from the start radius, then s = angle / k
        vx, vy = along, left - 1.0 / k  # point relative to the centre, start frame
        r0 = -1.0 / k  # start point relative to the centre is (0, r0)
        phi = np.arctan2(-r0 * vx, r0 * vy)
        return phi / k, 1.0 / k - np.sign(k) * np.hypot(vx, vy)
