"""Ray casting: one ray per pixel against the planes and primitives of a `Scene`, and one
shadow ray per lit pixel towards the light when the scene casts shadows."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from sfm_ros.core.errors import InputError
from sfm_ros.core.synthetic.materials import ALBEDO, Material, Surface
from sfm_ros.core.synthetic.noise import fbm
from sfm_ros.core.synthetic.scene import BOX, CYLINDER, SPHERE, Primitives, Scene

_SKY, _GROUND, _CEILING = -1, -2, -3
_EPS = 1e-6
_NEAR = 0.05
_SHADOW_CELL_M = 2.0  # grid of the shadow-ray binning, metres
_SHADOW_BIG_CELLS = 256  # primitives covering more cells test the points directly
_SHADOW_OFFSET_M = 1e-3  # shadow rays start this far off the surface (no self-shadowing)
_CORNERS = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], np.float64)
_EDGES = np.array(
    [
        (i, j)
        for i in range(8)
        for j in range(i + 1, 8)
        if np.abs(_CORNERS[i] - _CORNERS[j]).sum() == 2
    ]
)


def pixel_rays(K: np.ndarray, height: int, width: int) -> np.ndarray:
    """Camera-frame ray K^-1 [u, v, 1] of every pixel (u, v integer centres), (H, W, 3).

    The z component is exactly 1, so the ray parameter of a hit is its depth along z.
    """
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    rays = np.stack([u, v, np.ones_like(u)], axis=-1) @ np.linalg.inv(K).T
    rays[..., 2] = 1.0
    return rays


def _to_local(prims: Primitives, i: np.ndarray | int, v: np.ndarray) -> np.ndarray:
    """Rotate world vectors v (..., 3) into the frame of primitive(s) i (yaw about z)."""
    c, s = np.cos(prims.yaw[i]), np.sin(prims.yaw[i])
    return np.stack([c * v[..., 0] + s * v[..., 1], -s * v[..., 0] + c * v[..., 1], v[..., 2]], -1)


def _screen_rects(
    prims: Primitives,
    T_world_cam: np.ndarray,
    K: np.ndarray,
    height: int,
    width: int,
    max_range: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Primitives that may be visible and the pixel rectangle (v0, v1, u0, u1) bounding each.

    The bounding box corners are clipped against the plane z = _NEAR in front of the camera
    before projection, so boxes that pass beside the camera get a correct rectangle.
    """
    R, o = T_world_cam[:3, :3], T_world_cam[:3, 3]
    local = _CORNERS[None] * prims.half[:, None]  # (n, 8, 3)
    c, s = np.cos(prims.yaw)[:, None], np.sin(prims.yaw)[:, None]
    world = (
        np.stack(
            [
                c * local[..., 0] - s * local[..., 1],
                s * local[..., 0] + c * local[..., 1],
                local[..., 2],
            ],
            -1,
        )
        + prims.centre[:, None]
    )
    cam = (world - o) @ R  # (n, 8, 3)
    a, b = cam[:, _EDGES[:, 0]], cam[:, _EDGES[:, 1]]
    za, zb = a[..., 2], b[..., 2]
    crosses = (za - _NEAR) * (zb - _NEAR) < 0
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(crosses, (_NEAR - za) / (zb - za), 0.0)
    pts = np.concatenate([cam, a + t[..., None] * (b - a)], axis=1)
    ok = np.concatenate([cam[..., 2] >= _NEAR, crosses], axis=1)
    uvw = pts @ K.T
    uv = uvw[..., :2] / np.where(ok, uvw[..., 2], 1.0)[..., None]
    lo = np.where(ok[..., None], uv, np.inf).min(axis=1)
    hi = np.where(ok[..., None], uv, -np.inf).max(axis=1)
    dist = np.linalg.norm(prims.centre - o, axis=1) - np.linalg.norm(prims.half, axis=1)
    with np.errstate(invalid="ignore"):
        u0 = np.clip(np.floor(lo[:, 0]) - 1, 0, width).astype(np.int64)
        u1 = np.clip(np.ceil(hi[:, 0]) + 2, 0, width).astype(np.int64)
        v0 = np.clip(np.floor(lo[:, 1]) - 1, 0, height).astype(np.int64)
        v1 = np.clip(np.ceil(hi[:, 1]) + 2, 0, height).astype(np.int64)
    keep = ok.any(axis=1) & (dist < max_range) & (u1 > u0) & (v1 > v0)
    return np.flatnonzero(keep), np.stack([v0, v1, u0, u1], axis=1)[keep]


def _slabs(t1: np.ndarray, t2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entry and exit ray parameters (...) of a box from its slab crossings t1, t2 (..., 3)
    (component-wise: numpy reduces a short last axis slowly)."""
    near, far = np.minimum(t1, t2), np.maximum(t1, t2)
    t_in = np.maximum(np.maximum(near[..., 0], near[..., 1]), near[..., 2])
    t_out = np.minimum(np.minimum(far[..., 0], far[..., 1]), far[..., 2])
    return t_in, t_out


def _intersect(prims: Primitives, i: int, o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Ray parameter of the first hit of rays o + t d (d (..., 3)) with primitive i; inf if none."""
    c, h = prims.centre[i], prims.half[i]
    with np.errstate(divide="ignore", invalid="ignore"):
        if prims.kind[i] == BOX:
            ol, dl = _to_local(prims, i, o - c), _to_local(prims, i, d)
            t1, t2 = (-h - ol) / dl, (h - ol) / dl
            t_in, t_out = _slabs(t1, t2)
            hit = (t_in <= t_out) & (t_in > _EPS)
        elif prims.kind[i] == CYLINDER:
            oc = o[:2] - c[:2]
            qa = d[..., 0] ** 2 + d[..., 1] ** 2
            qb = d[..., 0] * oc[0] + d[..., 1] * oc[1]
            qc = oc @ oc - h[0] ** 2
            disc = qb * qb - qa * qc
            t_in = (-qb - np.sqrt(disc)) / qa
            z = o[2] + t_in * d[..., 2] - c[2]
            hit = (disc >= 0) & (t_in > _EPS) & (np.abs(z) <= h[2]) & (qc > 0)
        else:
            oc = o - c
            qa = (d * d).sum(axis=-1)
            qb = d @ oc
            qc = oc @ oc - h[0] ** 2
            disc = qb * qb - qa * qc
            t_in = (-qb - np.sqrt(disc)) / qa
            hit = (disc >= 0) & (t_in > _EPS) & (qc > 0)
    return np.where(hit, t_in, np.inf)


def _surface(
    scene: Scene, ids: np.ndarray, p: np.ndarray, footprint: np.ndarray
) -> tuple[Surface, np.ndarray, np.ndarray]:
    """Surface coordinates, outward normals (P, 3) and materials (P,) of hits p on ids;
    ``footprint`` (P,) is the distance between neighbouring pixel rays there (metres)."""
    P = len(ids)
    prims = scene.prims
    a, b, width, top = np.zeros(P), np.zeros(P), np.zeros(P), np.zeros(P)
    vertical = np.zeros(P, dtype=bool)
    normal = np.zeros((P, 3))
    obj = np.maximum(ids, 0)
    material = np.where(ids >= 0, prims.material[obj] if len(prims) else 0, scene.ground)
    colour = prims.colour[obj] if len(prims) else np.zeros((P, 3))
    key = np.where(ids >= 0, prims.key[obj] if len(prims) else 0, scene.texture_key)

    plane = ids < 0
    if plane.any():
        a[plane], b[plane] = scene.path.local(p[plane, :2])
        normal[plane, 2] = np.where(ids[plane] == _GROUND, 1.0, -1.0)
        material[ids == _CEILING] = Material.CEILING
    kind = np.where(ids >= 0, prims.kind[obj] if len(prims) else -1, -1)
    centre, half = prims.centre[obj[ids >= 0]], prims.half[obj[ids >= 0]]
    top[ids >= 0] = centre[:, 2] + half[:, 2]

    box = kind == BOX
    if box.any():
        i = obj[box]
        c, h = prims.centre[i], prims.half[i]
        loc = _to_local(prims, i, p[box] - c)
        axis = np.argmax(np.abs(loc) / h, axis=1)
        rows = np.arange(len(i))
        n_loc = np.zeros_like(loc)
        n_loc[rows, axis] = np.sign(loc[rows, axis])
        cy, sy = np.cos(prims.yaw[i]), np.sin(prims.yaw[i])
        normal[box] = np.stack(
            [cy * n_loc[:, 0] - sy * n_loc[:, 1], sy * n_loc[:, 0] + cy * n_loc[:, 1], n_loc[:, 2]],
            -1,
        )
        vertical[box] = axis < 2
        a[box] = np.where(axis == 0, loc[:, 1] + h[:, 1], loc[:, 0] + h[:, 0])
        width[box] = np.where(axis == 0, 2 * h[:, 1], 2 * h[:, 0])
        b[box] = np.where(axis < 2, p[box, 2], loc[:, 1] + h[:, 1])
    cyl = kind == CYLINDER
    if cyl.any():
        i = obj[cyl]
        r = p[cyl, :2] - prims.centre[i, :2]
        radius = np.linalg.norm(r, axis=1)
        normal[cyl, :2] = r / radius[:, None]
        vertical[cyl] = True
        a[cyl] = (np.arctan2(r[:, 1], r[:, 0]) + np.pi) * prims.half[i, 0]
        b[cyl] = p[cyl, 2]
        width[cyl] = 2 * np.pi * prims.half[i, 0]
    sph = kind == SPHERE
    if sph.any():
        i = obj[sph]
        normal[sph] = (p[sph] - prims.centre[i]) / prims.half[i, :1]
        a[sph], b[sph] = p[sph, 0], p[sph, 1]
    return Surface(p, a, b, vertical, width, top, colour, key, footprint), normal, material


def _sky(scene: Scene, d: np.ndarray) -> np.ndarray:
    """Sky colour (P, 3) of world rays d (P, 3): horizon to zenith by elevation, with clouds.

    Clouds are a pattern on a deck at infinity (a function of the ray direction only), so they
    stay consistent between views like the rest of the sky.
    """
    sin_e = np.clip(d[:, 2] / np.linalg.norm(d, axis=1), 0.0, 1.0)
    rgb = scene.sky_horizon + (scene.sky_zenith - scene.sky_horizon) * (sin_e**0.6)[:, None]
    if scene.cloud_cover <= 0.0:
        return rgb
    deck = d[:, :2] / np.linalg.norm(d, axis=1)[:, None] / np.maximum(sin_e, 0.03)[:, None]
    key = scene.texture_key + 7
    density = fbm(deck[:, 0] * 0.8, deck[:, 1] * 0.8, key, 4)
    cover = np.clip((density - 0.72 + 0.42 * scene.cloud_cover) / 0.12, 0.0, 1.0)
    cover *= np.clip(sin_e / 0.06, 0.0, 1.0)
    cloud = 0.97 - 0.4 * fbm(deck[:, 0] * 3.0, deck[:, 1] * 3.0, key + 1, 2) * cover
    return rgb + (cloud[:, None] * np.array([1.0, 1.0, 1.02]) - rgb) * cover[:, None]


def _world_corners(prims: Primitives) -> np.ndarray:
    """Corners (n, 8, 3) of each primitive's bounding box (boxes rotated by their yaw)."""
    local = _CORNERS[None] * prims.half[:, None]
    c, s = np.cos(prims.yaw)[:, None], np.sin(prims.yaw)[:, None]
    x = c * local[..., 0] - s * local[..., 1]
    y = s * local[..., 0] + c * local[..., 1]
    return np.stack([x, y, local[..., 2]], -1) + prims.centre[:, None]


def _occludes(prims: Primitives, i: np.ndarray, o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Whether rays o (P, 3) + t d (d (3,), t > 0) meet primitives i (P,); pairwise.

    Cylinders have no caps, which is exact for rays that rise (the light is above the horizon)
    from points above their base.
    """
    kind, c, h = prims.kind[i], prims.centre[i], prims.half[i]
    hit = np.zeros(len(i), dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        sel = np.flatnonzero(kind == BOX)
        if len(sel):
            j = i[sel]
            ol = _to_local(prims, j, o[sel] - c[sel])
            dl = _to_local(prims, j, np.broadcast_to(d, (len(sel), 3)))
            t1, t2 = (-h[sel] - ol) / dl, (h[sel] - ol) / dl
            t_in, t_out = _slabs(t1, t2)
            hit[sel] = (t_in <= t_out) & (t_out > _EPS)
        sel = np.flatnonzero(kind == CYLINDER)
        if len(sel):
            ox, oy = o[sel, 0] - c[sel, 0], o[sel, 1] - c[sel, 1]
            qa = d[0] ** 2 + d[1] ** 2
            qb = ox * d[0] + oy * d[1]
            qc = ox * ox + oy * oy - h[sel, 0] ** 2
            disc = qb * qb - qa * qc
            t_in = (-qb - np.sqrt(disc)) / qa
            z = o[sel, 2] + t_in * d[2] - c[sel, 2]
            hit[sel] = (disc >= 0) & (t_in > _EPS) & (np.abs(z) <= h[sel, 2]) & (qc > 0)
        sel = np.flatnonzero(kind == SPHERE)
        if len(sel):
            ox, oy, oz = (o[sel, k] - c[sel, k] for k in range(3))
            qb = ox * d[0] + oy * d[1] + oz * d[2]
            qc = ox * ox + oy * oy + oz * oz - h[sel, 0] ** 2
            disc = qb * qb - qc
            hit[sel] = (disc >= 0) & (-qb - np.sqrt(disc) > _EPS) & (qc > 0)
    return hit


def _cell_pairs(cell: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(primitive, point) index pairs (K,), (K,) of points whose grid cell (P, 2) lies in a
    primitive's cell rectangle [lo, hi] (n, 2), both ends included."""
    c_min = cell.min(axis=0)
    span = cell.max(axis=0) - c_min + 1
    key_p = (cell[:, 0] - c_min[0]) * span[1] + (cell[:, 1] - c_min[1])
    order = np.argsort(key_p, kind="stable")
    keys_sorted = key_p[order]
    n1 = hi[:, 1] - lo[:, 1] + 1
    n_cells = (hi[:, 0] - lo[:, 0] + 1) * n1
    prim = np.repeat(np.arange(len(lo)), n_cells)
    k = np.arange(n_cells.sum()) - np.repeat(np.cumsum(n_cells) - n_cells, n_cells)
    n1 = np.repeat(n1, n_cells)
    keys = (lo[prim, 0] + k // n1 - c_min[0]) * span[1] + (lo[prim, 1] + k % n1 - c_min[1])
    start = np.searchsorted(keys_sorted, keys, side="left")
    count = np.searchsorted(keys_sorted, keys, side="right") - start
    k = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    return np.repeat(prim, count), order[np.repeat(start, count) + k]


def _shadowed(prims: Primitives, p: np.ndarray, light: np.ndarray) -> np.ndarray:
    """Whether the ray from each point p (P, 3) towards the directional ``light`` (3,) meets a
    primitive, (P,) bool.

    A shadow ray is only tested against primitives whose bounding box, projected on the plane
    normal to the light, covers the point, and which reach farther towards the light than the
    point. Small primitives find their points through a grid of cells on that plane; large ones
    (hills, long buildings) test the points directly.
    """
    out = np.zeros(len(p), dtype=bool)
    if not len(prims) or not len(p):
        return out
    side = np.array([1.0, 0.0, 0.0]) if abs(light[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(light, side)
    e1 /= np.linalg.norm(e1)
    axes = np.stack([e1, np.cross(light, e1)])  # (2, 3)
    flat_p = p @ axes.T  # (P, 2) on the plane normal to the light
    qx, qy = np.ascontiguousarray(flat_p[:, 0]), np.ascontiguousarray(flat_p[:, 1])
    height = p @ light  # (P,) along the light
    corners = _world_corners(prims)
    flat = corners @ axes.T  # (n, 8, 2)
    low, high = flat.min(axis=1), flat.max(axis=1)
    reach = (corners @ light).max(axis=1)  # how far towards the light each primitive extends
    covers = (low[:, 0] <= qx.max()) & (low[:, 1] <= qy.max())
    covers &= (high[:, 0] >= qx.min()) & (high[:, 1] >= qy.min())
    candidates = np.flatnonzero(covers & (reach > height.min()))
    cell = np.floor(flat_p / _SHADOW_CELL_M).astype(np.int64)
    lo = np.maximum(np.floor(low / _SHADOW_CELL_M).astype(np.int64), cell.min(axis=0))
    hi = np.minimum(np.floor(high / _SHADOW_CELL_M).astype(np.int64), cell.max(axis=0))
    big = np.prod(hi - lo + 1, axis=1) > _SHADOW_BIG_CELLS
    for i in candidates[big[candidates]]:
        near = ~out & (height < reach[i]) & (qx >= low[i, 0]) & (qx <= high[i, 0])
        near &= (qy >= low[i, 1]) & (qy <= high[i, 1])
        point = np.flatnonzero(near)
        out[point[_occludes(prims, np.full(len(point), i), p[point], light)]] = True
    small = candidates[~big[candidates]]
    pair_prim, pair_point = _cell_pairs(cell, lo[small], hi[small])
    pair_prim = small[pair_prim]
    lo_f, hi_f = low[pair_prim], high[pair_prim]
    near = ~out[pair_point] & (reach[pair_prim] > height[pair_point])
    near &= (qx[pair_point] >= lo_f[:, 0]) & (qx[pair_point] <= hi_f[:, 0])
    near &= (qy[pair_point] >= lo_f[:, 1]) & (qy[pair_point] <= hi_f[:, 1])
    pair_prim, pair_point = pair_prim[near], pair_point[near]
    out[pair_point[_occludes(prims, pair_prim, p[pair_point], light)]] = True
    return out


def render_radiance(
    scene: Scene, T_world_cam: np.ndarray, K: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Like `render_frame`, but the image is float64 (H, W, 3) before clipping and rounding:
    albedo times shading (1 = a white surface facing the light; lights exceed 1)."""
    T = np.asarray(T_world_cam, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    if T.shape != (4, 4) or K.shape != (3, 3) or not np.array_equal(K[2], [0.0, 0.0, 1.0]):
        raise InputError(
            f"render_frame needs T_world_cam (4, 4) and K (3, 3) with last row "
            f"(0, 0, 1); got {T.shape} and {K.shape}"
        )
    if height < 1 or width < 1:
        raise InputError(f"image size must be positive, got {height}x{width}")
    o = T[:3, 3]
    d = pixel_rays(K, height, width) @ T[:3, :3].T  # world directions, (H, W, 3)
    t = np.full((height, width), np.inf)
    ids = np.full((height, width), _SKY, dtype=np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_plane = -o[2] / d[..., 2]
        hit = (t_plane > _EPS) & np.isfinite(t_plane)
        t[hit], ids[hit] = t_plane[hit], _GROUND
        if scene.ceiling_z is not None:
            t_plane = (scene.ceiling_z - o[2]) / d[..., 2]
            hit = (t_plane > _EPS) & (t_plane < t)
            t[hit], ids[hit] = t_plane[hit], _CEILING
    for i, (v0, v1, u0, u1) in zip(
        *_screen_rects(scene.prims, T, K, height, width, scene.max_range_m), strict=True
    ):
        t_i = _intersect(scene.prims, i, o, d[v0:v1, u0:u1])
        t_view = t[v0:v1, u0:u1]
        closer = t_i < t_view
        t_view[closer] = t_i[closer]
        ids[v0:v1, u0:u1][closer] = i

    rgb = np.empty((height, width, 3))
    sky = ids == _SKY
    rgb[sky] = _sky(scene, d[sky])
    hit = ~sky
    d_hit = d[hit]
    p = o + t[hit][:, None] * d_hit
    dist = t[hit] * np.linalg.norm(d_hit, axis=1)  # d has optical z = 1, so t is depth
    surface, normal, material = _surface(scene, ids[hit], p, dist / K[0, 0])
    # seen at a slant a pixel covers more surface: stretch by 1/sqrt(cos), a compromise between
    # the foreshortened and the other direction
    cos = np.abs((normal * d_hit).sum(axis=1)) / np.linalg.norm(d_hit, axis=1)
    surface = replace(surface, footprint=surface.footprint / np.sqrt(np.maximum(cos, 0.05)))
    albedo = np.zeros((len(material), 3))
    for m in np.unique(material):
        sel = material == m
        albedo[sel] = ALBEDO[Material(m)](surface.take(sel))
    facing = np.clip(normal @ scene.light_dir, 0.0, None)
    if scene.shadows:
        lit = np.flatnonzero(facing > 0)
        near = np.linalg.norm(scene.prims.centre - o, axis=1) < scene.max_range_m
        casters = scene.prims.select(near)
        origin = p[lit] + _SHADOW_OFFSET_M * normal[lit]
        facing[lit[_shadowed(casters, origin, scene.light_dir)]] = 0.0
    shade = scene.ambient + (1.0 - scene.ambient) * facing
    rgb[hit] = albedo * shade[:, None]
    depth = np.where(hit, t, 0.0).astype(np.float32)
    return rgb, depth


def render_frame(
    scene: Scene, T_world_cam: np.ndarray, K: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Render one view of ``scene``.

    Args:
        scene: the world (z up, ground plane z = 0).
        T_world_cam: (4, 4) camera-to-world pose, optical camera frame (x right, y down, z fwd).
        K: (3, 3) intrinsics, pixel centres at integer coordinates, last row (0, 0, 1).
        height, width: image size in pixels.

    Returns:
        image (H, W, 3) uint8 RGB and depth_m (H, W) float32: metres along the optical z axis,
        0 where the ray meets nothing (sky).
    """
    rgb, depth = render_radiance(scene, T_world_cam, K, height, width)
    return np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8), depth
