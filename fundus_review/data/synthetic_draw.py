"""Drawing one synthetic fundus photograph: disc and cup shapes, vessels, background, lesions.

The pieces `synthetic.generate_fundus` assembles (split out of synthetic.py to keep each module
small). Coordinates follow docs/CONTRACTS.md: pixel (row i, col j) has its centre at
(j + 0.5, i + 0.5), and a pixel belongs to a mask when its centre lies inside the drawn shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

_SS = 3  # vessel supersampling factor


# ---------------------------------------------------------------- shapes
def _noise(rng, h, w, cells) -> np.ndarray:
    """Smooth noise of unit std: a coarse random grid upsampled bicubically."""
    ch, cw = max(2, round(cells * h / max(h, w))), max(2, round(cells * w / max(h, w)))
    grid = rng.standard_normal((ch, cw)).astype(np.float32)
    out = np.asarray(Image.fromarray(grid).resize((w, h), Image.Resampling.BICUBIC))
    return out / max(float(out.std()), 1e-6)


def _shape(rng, cx, cy, a, b, wobble, angle=0.0, k_max=4) -> dict:
    """An ellipse whose radius is modulated by a few low harmonics (a slightly irregular blob)."""
    harm = [(k, rng.uniform(0, wobble), rng.uniform(0, 2 * np.pi)) for k in range(2, k_max + 1)]
    return dict(cx=float(cx), cy=float(cy), a=float(a), b=float(b), angle=float(angle), harm=harm)


def _radius_factor(s, th) -> np.ndarray:
    f = np.ones_like(th)
    for k, eps, phase in s["harm"]:
        f += eps * np.cos(k * th + phase)
    return f


def _sdf(s, x, y) -> np.ndarray:
    """Approximate signed distance in pixels (negative inside); its zero set is the exact shape."""
    c, sn = math.cos(s["angle"]), math.sin(s["angle"])
    dx, dy = x - s["cx"], y - s["cy"]
    xr, yr = (dx * c + dy * sn) / s["a"], (-dx * sn + dy * c) / s["b"]
    return (np.hypot(xr, yr) - _radius_factor(s, np.arctan2(yr, xr))) * math.sqrt(s["a"] * s["b"])


def _outline(s, n=1024) -> tuple[np.ndarray, np.ndarray]:
    th = np.linspace(0, 2 * np.pi, n, endpoint=False)
    f = _radius_factor(s, th)
    xr, yr = s["a"] * f * np.cos(th), s["b"] * f * np.sin(th)
    c, sn = math.cos(s["angle"]), math.sin(s["angle"])
    return s["cx"] + xr * c - yr * sn, s["cy"] + xr * sn + yr * c


def _fit_vertical(s, cy, vdiam) -> dict:
    """Scale the shape so its vertical extent is exactly vdiam, centred on cy (this defines CDR)."""
    _, ys = _outline(s)
    s = dict(s, a=s["a"] * vdiam / np.ptp(ys), b=s["b"] * vdiam / np.ptp(ys))
    _, ys = _outline(s)
    return dict(s, cy=s["cy"] + cy - (ys.min() + ys.max()) / 2)


def shape_area(s) -> float:
    th = np.linspace(0, 2 * np.pi, 1024, endpoint=False)
    return float(s["a"] * s["b"] * np.pi * np.mean(_radius_factor(s, th) ** 2))


def _window(s, h, w, pad) -> tuple[slice, slice, np.ndarray, np.ndarray]:
    """The pixel window around a shape, with its pixel-centre coordinates."""
    xs, ys = _outline(s, 256)
    r0, r1 = max(0, int(ys.min() - pad)), min(h, math.ceil(ys.max() + pad) + 1)
    c0, c1 = max(0, int(xs.min() - pad)), min(w, math.ceil(xs.max() + pad) + 1)
    gy = (np.arange(r0, r1, dtype=np.float32) + 0.5)[:, None]
    gx = (np.arange(c0, c1, dtype=np.float32) + 0.5)[None, :]
    return slice(r0, r1), slice(c0, c1), gx, gy


def shape_mask(s, h, w) -> np.ndarray:
    out = np.zeros((h, w), bool)
    rs, cs, gx, gy = _window(s, h, w, 2)
    out[rs, cs] = _sdf(s, gx, gy) < 0
    return out


@dataclass
class Geo:
    h: int
    w: int
    cx: float
    cy: float
    r: float
    band: float | None  # half-height of a horizontal cut of the field of view
    tx: float  # +1 when temporal (towards the macula) is +x
    disc: dict
    cup: dict
    dv: float  # vertical disc diameter
    dd: float  # mean disc diameter
    disc_c: np.ndarray
    fovea: np.ndarray

    def fov_ok(self, p, size) -> bool:
        if math.hypot(p[0] - self.cx, p[1] - self.cy) > 0.85 * self.r - size:
            return False
        return self.band is None or abs(p[1] - self.cy) < self.band - size - 2


def make_geometry(rng, h, w, cdr, label, eye) -> Geo:
    # field of view: wide frames cut the circle at top and bottom; some cameras cut square ones too
    wide = w / h >= 1.15
    r = min(0.49 * w, 0.5 * h * (rng.uniform(1.0, 1.12) if wide else rng.uniform(0.88, 0.98)))
    band = r * rng.uniform(0.86, 0.96) if rng.random() < 0.35 else None
    cx, cy = w / 2 + rng.normal(0, 0.004 * w), h / 2 + rng.normal(0, 0.004 * h)
    tx = -1.0 if eye == "OD" else 1.0  # a right eye shows its disc on the right, macula on the left
    # Disc size varies about 3-fold in area, as between real eyes: a small disc with a large cup
    # and a large disc with a small cup have similar pale areas, so only the cup-to-disc ratio
    # (cup against rim, at the disc) separates the classes, never the pale area alone.
    dv = rng.uniform(0.2, 0.36) * r
    disc_c = np.array([cx - tx * rng.uniform(0.25, 0.5) * r, cy + rng.uniform(-0.1, 0.1) * r])
    raw = _shape(rng, *disc_c, dv / 2 * rng.uniform(0.86, 0.97), dv / 2, 0.025, rng.normal(0, 0.1))
    disc = _fit_vertical(raw, disc_c[1], dv)
    # glaucomatous cups elongate vertically; shrink the cup's width until it sits inside the rim
    cup_w = cdr * (rng.uniform(0.8, 0.97) if label == "glaucoma" else rng.uniform(0.9, 1.1))
    for _ in range(40):
        off = np.array([tx * rng.uniform(0, 0.12), rng.uniform(-0.05, 0.05)]) * dv * (1 - cdr)
        raw = _shape(
            rng, *(disc_c + off), disc["a"] * cup_w, cdr * dv / 2, 0.05, rng.normal(0, 0.1), 3
        )
        cup = _fit_vertical(raw, disc_c[1] + off[1], cdr * dv)
        if _sdf(disc, *_outline(cup, 720)).max() < -min(1.0, 0.03 * dv):
            break
        cup_w *= 0.93
    dd = disc["a"] + disc["b"]
    fovea = disc_c + np.array([tx * 2.5 * dd, rng.uniform(0.05, 0.3) * dd])  # 2.5 DD temporal
    return Geo(h, w, cx, cy, r, band, tx, disc, cup, dv, dd, disc_c, fovea)


# ---------------------------------------------------------------- vessels
def _resample(pts, ds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = np.concatenate([[0], np.cumsum(np.hypot(*np.diff(pts, axis=0).T))])
    si = np.arange(0, s[-1], ds)
    pts = np.stack([np.interp(si, s, pts[:, 0]), np.interp(si, s, pts[:, 1])], 1)
    d = np.diff(pts, axis=0)
    ang = np.arctan2(d[:, 1], d[:, 0])
    return pts, si, np.concatenate([ang, ang[-1:]])


def _walk(rng, p0, heading, w0, length, curv, wiggle, ds=3.0) -> tuple:
    """A gently meandering vessel: heading = integral of curvature plus smoothed noise."""
    n, k = max(3, int(length / ds)), 25
    jit = np.convolve(rng.standard_normal(n + k), np.ones(k) / math.sqrt(k), "valid")[:n]
    ang = heading + np.cumsum((curv + wiggle * jit) * ds)
    pts = np.vstack([p0, p0 + np.cumsum(np.stack([np.cos(ang), np.sin(ang)], 1) * ds, 0)])
    s = np.arange(n + 1) * ds
    return pts, w0 * (1 - 0.85 * s / length), np.concatenate([[heading], ang])


def _arcade(rng, g: Geo, up, w0, u0) -> tuple:
    """A main temporal arcade after Foracchia et al.: a parabola-like curve u = c|v|^p with its
    vertex at the disc and opening around the fovea, plus slow meanders (so artery and vein cross)."""
    axis = g.fovea - g.disc_c
    dist = float(np.hypot(*axis))
    eu = axis / dist
    ev = np.array([-eu[1], eu[0]]) * (1 if eu[0] * up > 0 else -1)  # up=-1: superior (image top)
    p, vf = rng.uniform(2.0, 2.8), rng.uniform(1.3, 1.9) * g.dd
    c = (dist + u0) / vf**p
    v = np.linspace(0, 2 * g.r, 1500)
    u = c * v**p - u0
    v = v + 0.04 * g.r * np.sin(
        2 * np.pi * u / (rng.uniform(0.3, 0.7) * g.r) + rng.uniform(0, 7)
    ) * np.clip(u / g.dd, 0, 1)
    pts = g.disc_c + np.outer(u, eu) + np.outer(v, ev)
    pts, s, ang = _resample(pts, 3.0)
    return pts, w0 * (1 - 0.45 * s / (1.6 * g.r)), ang


def vessel_tree(rng, g: Geo) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Centre lines with widths; kind 0 = artery, 1 = vein. Branches recurse with a Murray-like
    taper and stop at the rim of the field, the foveal avascular zone or the minimum width."""
    faz, wmin = rng.uniform(0.25, 0.35) * g.dd, max(0.6, g.r / 300)
    vein_w = g.dd * rng.uniform(0.09, 0.115)
    queue = []
    vertex = rng.uniform(0.0, 0.12, 2) * g.dd  # per kind, so the upper and lower trunks meet
    for up in (-1, 1):
        for kind, wk in ((1, 1.0), (0, 0.78)):
            queue.append((*_arcade(rng, g, up, vein_w * wk, vertex[kind]), kind, 0))
        for kind, wk in ((1, 0.62), (0, 0.5)):  # nasal vessels
            h = math.atan2(up * rng.uniform(0.4, 1.3), -g.tx)
            curv = up * g.tx * rng.uniform(0.0, 2.0) / g.r
            p0 = g.disc_c + np.array([-g.tx * 0.1, up * rng.uniform(0.05, 0.2)]) * g.dd
            length = rng.uniform(0.8, 1.1) * g.r
            queue.append((*_walk(rng, p0, h, vein_w * wk, length, curv, 0.006), kind, 1))
    for _ in range(rng.integers(1, 4)):  # thin papillomacular vessels
        h = math.atan2(rng.uniform(-0.5, 0.5), g.tx)
        p0 = g.disc_c + np.array([g.tx * 0.4, rng.uniform(-0.25, 0.25)]) * g.dd  # from the rim
        walk = _walk(rng, p0, h, vein_w * 0.22, 2 * g.dd, 0.0, 0.01)
        queue.append((*walk, int(rng.integers(2)), 2))
    out = []
    while queue and len(out) < 160:
        pts, w, ang, kind, depth = queue.pop(0)
        stop = (np.hypot(pts[:, 0] - g.cx, pts[:, 1] - g.cy) > g.r * 1.01) | (w < wmin)
        stop |= np.hypot(pts[:, 0] - g.fovea[0], pts[:, 1] - g.fovea[1]) < faz
        n = int(np.argmax(stop)) if stop.any() else len(pts)
        if n < 3:
            continue
        pts, w, ang = pts[:n], w[:n].copy(), ang[:n]
        off_disc = np.hypot(pts[:, 0] - g.disc_c[0], pts[:, 1] - g.disc_c[1]) > 0.6 * g.dd
        i, side = int(np.argmax(off_disc)) + int(rng.integers(2, 8)), rng.choice((-1, 1))
        while i < n - 4 and depth < 3:
            cw = w[i] * rng.uniform(0.45, 0.8)
            if cw >= wmin * 1.3:
                side = -side if rng.random() < 0.75 else side
                h = ang[i] + side * rng.uniform(0.45, 1.2)
                walk = _walk(
                    rng, pts[i], h, cw, cw * rng.uniform(35, 60), rng.normal(0, 0.6) / g.r, 0.007
                )
                queue.append((*walk, kind, depth + 1))
                w[i:] *= rng.uniform(0.84, 0.95)
            i += max(4, int(w[i] * rng.uniform(12, 30) / 3.0))
        out.append((pts, w, kind))
    return out


def render_vessels(vessels, h, w) -> list[np.ndarray]:
    """Supersampled strokes: a wide pale pass, then a narrow dark core (the rounded cross-section of
    a real vessel); box-downsampling anti-aliases the edges. Returns [artery, vein] in [0, 1]."""
    layers = [Image.new("L", (w * _SS, h * _SS), 0) for _ in range(2)]
    draws = [ImageDraw.Draw(im) for im in layers]
    # every core is drawn after every halo, so crossings stay dark
    for value, scale in ((150, 1.0), (255, 0.5)):
        for pts, wd, kind in vessels:
            wq = np.maximum(1, np.round(wd * _SS * scale)).astype(int)
            cuts = np.concatenate([[0], np.flatnonzero(np.diff(wq)) + 1, [len(pts)]])
            for a, b in zip(cuts[:-1], cuts[1:], strict=True):
                seg = pts[a : b + 1] * _SS
                if len(seg) >= 2:
                    draws[kind].line(seg.ravel().tolist(), fill=value, width=int(wq[a]))
    out = []
    for im in layers:
        small = im.reduce(_SS).filter(ImageFilter.BoxBlur(0.5))
        out.append(np.asarray(small, dtype=np.float32) / 255.0)
    return out


# ---------------------------------------------------------------- painting
def paint_background(rng, g: Geo) -> np.ndarray:
    """(3, H, W) orange-red fundus: vignetting, uneven illumination, choroidal mottling, a darker
    macula, optional lens haze. The smooth part is computed on a 4x coarser grid and upsampled."""
    h, w = g.h, g.w
    lh, lw = -(-h // 4), -(-w // 4)
    xs = ((np.arange(lw, dtype=np.float32) + 0.5) * w / lw)[None, :]
    ys = ((np.arange(lh, dtype=np.float32) + 0.5) * h / lh)[:, None]
    rho = np.hypot(xs - g.cx, ys - g.cy) / g.r
    red = rng.uniform(0.8, 0.97)
    base = np.array([red, red * rng.uniform(0.36, 0.52), 0.0])
    base[2] = base[1] * rng.uniform(0.28, 0.55)
    vig = np.clip(1 - rng.uniform(0.3, 0.55) * rho ** rng.uniform(1.8, 3.0), 0.05, 1)
    phi = rng.uniform(0, 2 * np.pi)
    proj = ((xs - g.cx) * math.cos(phi) + (ys - g.cy) * math.sin(phi)) / g.r
    grad = 1 + rng.uniform(0, 0.15) * proj
    lf, mf = _noise(rng, lh, lw, 4), _noise(rng, lh, lw, max(8, w // 14))
    d2 = (xs - g.fovea[0]) ** 2 + (ys - g.fovea[1]) ** 2
    mac = rng.uniform(0.15, 0.32) * np.exp(-d2 / (2 * (rng.uniform(0.5, 0.8) * g.dd) ** 2))
    mac += rng.uniform(0.06, 0.16) * np.exp(-d2 / (2 * (0.15 * g.dd) ** 2))
    haze = np.clip(proj - 0.4, 0, 1) ** 2 * rng.uniform(0.3, 0.8) * (rng.random() < 0.3)
    fine = (
        _noise(rng, h, w, max(16, w // 4)) * 0.025 + rng.standard_normal((h, w), np.float32) * 0.008
    )
    img = np.empty((3, h, w), np.float32)
    for ch, (vp, lfa, mfa, mk, hz) in enumerate(
        ((1.0, 0.05, 0.025, 0.6, 0.4), (1.3, 0.07, 0.05, 1.0, 0.38), (1.5, 0.08, 0.06, 1.0, 0.1))
    ):
        smooth = base[ch] * vig**vp * grad * (1 + lfa * lf + mfa * mf) * (1 - mk * mac) + hz * haze
        img[ch] = np.asarray(
            Image.fromarray(smooth.astype(np.float32)).resize((w, h), Image.Resampling.BICUBIC)
        )
        img[ch] *= 1 + fine
    return img


def paint_disc(rng, img, g: Geo, exposure) -> None:
    """Soft-edged orange-yellow rim with a faint peripapillary glow and a paler cup. Both edges
    are symmetric ramps around the shape, so their 50% level is exactly the mask boundary."""
    rs, cs, gx, gy = _window(g.disc, g.h, g.w, 0.7 * g.dd)
    sd = _sdf(g.disc, gx, gy)
    cov_d = np.clip(0.5 - sd / max(1.0, g.dv / 22), 0, 1)
    cov_c = np.clip(0.5 - _sdf(g.cup, gx, gy) / max(1.5, g.dv / 9), 0, 1) * cov_d
    glow = 1 + 0.1 * np.exp(-np.maximum(sd, 0) / (0.12 * g.dd)) * (1 - cov_d)
    tex = 1 + 0.03 * _noise(rng, *sd.shape, 6)
    bright = min(1.0, exposure**0.5 * rng.uniform(0.95, 1.08))
    rim = np.array([1.0, rng.uniform(0.56, 0.74), rng.uniform(0.3, 0.5)], np.float32) * bright
    pale = np.array([1.0, rng.uniform(0.85, 0.92), rng.uniform(0.62, 0.74)], np.float32) * bright
    inner = np.clip(-sd / (0.4 * g.dd), 0, 1)
    for ch in range(3):
        rim_ch = rim[ch] * (1 + inner * (0.0, 0.08, 0.12)[ch]) * tex
        patch = img[ch, rs, cs] * glow * (1 - 0.88 * cov_d) + 0.88 * cov_d * rim_ch
        img[ch, rs, cs] = patch * (1 - 0.9 * cov_c) + 0.9 * cov_c * pale[ch] * tex


def _place(rng, centre, spread, ok) -> np.ndarray | None:
    for _ in range(50):
        p = np.floor(centre + rng.normal(0, spread, 2)) + 0.5  # a pixel centre: never an empty mask
        if ok(p):
            return p
    return None


def paint_lesions(rng, img, g: Geo, n_hem, n_clusters) -> tuple[dict, dict]:
    """Dot/blot hemorrhages and clusters of hard exudates around the posterior pole, off the disc."""
    h, w, sc = g.h, g.w, g.r / 240
    masks = {"hemorrhage": np.zeros((h, w), bool), "hard_exudate": np.zeros((h, w), bool)}
    counts = dict.fromkeys(masks, 0)

    def ok(p, size) -> bool:
        return g.fov_ok(p, size) and math.hypot(*(p - g.disc_c)) > 0.75 * g.dd + size

    def stamp(kind, s, soft, colour, alpha, mode) -> None:
        rs, cs, gx, gy = _window(s, h, w, 2)
        sd = _sdf(s, gx, gy)
        cov = np.clip(0.5 - sd / soft, 0, 1) * alpha
        for ch in range(3):
            px = img[ch, rs, cs]
            img[ch, rs, cs] = (
                px * (1 - cov * (1 - colour[ch])) if mode == "mul" else px + cov * (colour[ch] - px)
            )
        masks[kind][rs, cs] |= sd < 0
        counts[kind] += 1

    for _ in range(n_hem):
        blot = rng.random() < 0.45
        a = (rng.uniform(2.5, 6.5) if blot else rng.uniform(0.9, 2.0)) * sc
        p = _place(rng, g.fovea, 0.45 * g.r, lambda q, a=a: ok(q, a))
        if p is not None:
            b, wobble = a * rng.uniform(0.65, 1.0), 0.12 if blot else 0.03
            s = _shape(rng, *p, a, b, wobble, rng.uniform(0, np.pi))
            dark = np.array([0.5, 0.27, 0.3]) * rng.uniform(0.8, 1.1)
            stamp("hemorrhage", s, 0.8, dark, rng.uniform(0.8, 0.95), "mul")
    for _ in range(n_clusters):
        c = _place(rng, g.fovea, 0.3 * g.r, lambda q: ok(q, 0.15 * g.r))
        if c is None:
            continue
        spread = rng.uniform(0.15, 0.45) * g.dd
        yellow = np.array([1.0, 0.87, 0.32]) * rng.uniform(0.9, 1.05)
        for _ in range(rng.integers(4, 22)):
            a = rng.uniform(0.7, 2.4) * sc
            p = _place(rng, c, spread, lambda q, a=a: ok(q, a))
            if p is not None:
                s = _shape(rng, *p, a, a * rng.uniform(0.6, 1.0), 0.15, rng.uniform(0, np.pi))
                stamp("hard_exudate", s, 0.7, yellow, rng.uniform(0.8, 0.95), "mix")
    return {k: m for k, m in masks.items() if m.any()}, counts
