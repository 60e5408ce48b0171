"""Geometry: head surface, pose, alignment and the projected polygons (vectorised over the batch)."""

from __future__ import annotations

import numpy as np

from fr_lightning.data.synthetic.constants import (
    _BUMP_Y,
    _CHEEK_B,
    _CHIN_B,
    _CHIN_Y,
    _EAR_Y,
    _EYE_X,
    _EYE_Y,
    _HEAD_TOP,
    _JAW_B,
    _MOUTH_X,
    _MOUTH_Y,
    _NOSE_Y,
    _N_HAIR,
    _N_HEAD,
    _N_SKIN,
    _ONE,
    _PROF_B,
    _PROF_F,
    _PROF_W,
    _PROF_Y,
)




def _rotation(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """Rotation matrices [N, 3, 3] = Rz(roll) · Rx(pitch) · Ry(yaw), angles in degrees."""
    y, p, r = (np.deg2rad(a) for a in (yaw, pitch, roll))
    cy, sy, cp, sp, cr, sr = np.cos(y), np.sin(y), np.cos(p), np.sin(p), np.cos(r), np.sin(r)
    ry = np.zeros((len(y), 3, 3))
    ry[:, 0, 0], ry[:, 0, 2], ry[:, 1, 1], ry[:, 2, 0], ry[:, 2, 2] = cy, sy, 1.0, -sy, cy
    rx = np.zeros_like(ry)
    # Image y points down, so a positive pitch (nose up) moves points with z > 0 to smaller y.
    rx[:, 0, 0], rx[:, 1, 1], rx[:, 1, 2], rx[:, 2, 1], rx[:, 2, 2] = 1.0, cp, -sp, sp, cp
    rz = np.zeros_like(ry)
    rz[:, 0, 0], rz[:, 0, 1], rz[:, 1, 0], rz[:, 1, 1], rz[:, 2, 2] = cr, -sr, sr, cr, 1.0
    return rz @ rx @ ry


def _fixed(z: np.ndarray) -> np.ndarray:
    """Complex image points -> int32 fixed-point (x, y) pairs for cv2's ``shift`` argument."""
    out = np.empty(z.shape + (2,), np.int32)
    out[..., 0] = np.rint(z.real * _ONE)
    out[..., 1] = np.rint(z.imag * _ONE)
    return out


def _smoothstep(t: np.ndarray) -> np.ndarray:
    """Cubic smoothstep of ``t`` clipped to [0, 1]."""
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


class GeometryMixin:
    """Projects a batch's identity and nuisance parameters to image space for :class:`FaceRenderer`."""

    image_size: int
    _template: np.ndarray

    @staticmethod
    def _profile(y: np.ndarray, idp: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Half-width, centre depth and half-depth of the head slices at canonical heights ``y`` [N, K]."""
        w = np.interp(y, _PROF_Y, _PROF_W)
        mod = (
            1.0
            + idp["jaw"][:, None] * np.interp(y, _BUMP_Y, _JAW_B)
            + idp["cheek"][:, None] * np.interp(y, _BUMP_Y, _CHEEK_B)
            + idp["chin"][:, None] * np.interp(y, _BUMP_Y, _CHIN_B)
        )
        w = w * mod * idp["W"][:, None]
        front = np.interp(y, _PROF_Y, _PROF_F) * idp["depth"][:, None]
        back = np.interp(y, _PROF_Y, _PROF_B) * idp["depth"][:, None]
        return np.maximum(w, 0.5), 0.5 * (front + back), np.maximum(0.5 * (front - back), 0.5)

    @staticmethod
    def _stretch(y: np.ndarray, idp: dict[str, np.ndarray]) -> np.ndarray:
        """Canonical height -> identity height (a longer or shorter lower face)."""
        return y + idp["chin_len"][:, None] * np.clip((y - 5.0) / 45.0, 0.0, 1.0)

    def _surface(
        self, x: np.ndarray, y: np.ndarray, idp: dict[str, np.ndarray], dz: np.ndarray | float = 0.0
    ) -> np.ndarray:
        """3-D points on the face surface at canonical (x, y) [N, M], pushed out by ``dz``; [N, M, 3]."""
        w, c, d = self._profile(y, idp)
        z = c + d * np.sqrt(np.clip(1.0 - (x / w) ** 2, 0.0, 1.0)) + dz
        return np.stack([x, self._stretch(y, idp), z], axis=-1)

    def _facing(self, x: np.ndarray, y: np.ndarray, idp: dict[str, np.ndarray], rot: np.ndarray) -> np.ndarray:
        """z component (towards the camera) of the rotated surface normal at canonical (x, y) [N, M]."""
        w, _, d = self._profile(y, idp)
        sin_t = np.clip(x / w, -1.0, 1.0)
        nx, nz = d * sin_t, w * np.sqrt(1.0 - sin_t**2)
        norm = np.sqrt(nx**2 + nz**2)
        return (rot[:, 2, 0, None] * nx + rot[:, 2, 2, None] * nz) / norm

    def _band(
        self,
        y: np.ndarray,
        w: np.ndarray,
        c: np.ndarray,
        d: np.ndarray,
        lo: np.ndarray | float,
        hi: np.ndarray | float,
        yaw: np.ndarray,
    ) -> np.ndarray:
        """Outline of the visible part of a stack of elliptic slices, as 3-D polygon points [N, 2K, 3].

        Slice k is the ellipse (w sinθ, y, c + d cosθ) restricted to azimuths θ in [lo, hi]. At a
        given yaw, the visible arc of a slice is [θ* − π, θ*] with θ* = atan2(w cos ψ, d sin ψ),
        along which the projected x grows monotonically; so the polygon is the right ends top to
        bottom followed by the left ends bottom to top.
        """
        psi = np.deg2rad(yaw)[:, None]
        theta = np.arctan2(w * np.cos(psi), d * np.sin(psi))
        a = np.maximum(lo, theta - np.pi)
        b = np.maximum(np.minimum(hi, theta), a)
        right = np.stack([w * np.sin(b), y, c + d * np.cos(b)], axis=-1)
        left = np.stack([w * np.sin(a), y, c + d * np.cos(a)], axis=-1)
        return np.concatenate([right, left[:, ::-1]], axis=1)

    def _geometry(self, idp: dict[str, np.ndarray], nup: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Project everything of a batch to image space; returns fixed-point polygons and ellipses."""
        n = len(nup["yaw"])
        S = self.image_size
        yaw = np.clip(nup["yaw"], -89.0, 89.0)
        rot = _rotation(yaw, nup["pitch"], nup["roll"])
        rot_t = rot.transpose(0, 2, 1)
        smile, mopen, brow_up, blink = nup["smile"], nup["open"], nup["brow_up"], nup["blink"]
        g: dict[str, np.ndarray] = {}
        zero = np.zeros(n)

        def col(v: np.ndarray) -> np.ndarray:
            """[N] -> [N, 1] for broadcasting against per-point arrays."""
            return v[:, None]

        # ---- keypoints on the surface (canonical x, y, depth offset) ----
        ex = _EYE_X + idp["eye_dx"]
        ey = _EYE_Y + idp["eye_dy"]
        ew, eh = idp["eye_w"], idp["eye_h"] * (1.0 - blink)
        tilt = idp["eye_tilt"]
        # Eye centres, then corners: L outer, L inner, R inner, R outer.
        eye_x = np.stack([-ex, ex, -ex - ew, -ex + ew, ex - ew, ex + ew], axis=1)
        eye_y = np.stack([ey, ey, ey - tilt, ey, ey, ey - tilt], axis=1)
        eyes3 = self._surface(eye_x, eye_y, idp, -3.0)
        # Mouth: corners L, R; upper outer L-peak, centre, R-peak; inner upper, inner lower;
        # lower outer L, centre, R.
        mw = _MOUTH_X * idp["mouth_w"] * (1.0 + 0.08 * smile)
        my = _MOUTH_Y + idp["mouth_dy"]
        cy = my - 2.5 * smile
        lu, ll = 3.2 * idp["lip_u"], 4.0 * idp["lip_l"]
        mouth_x = np.stack([-mw, mw, -0.38 * mw, zero, 0.38 * mw, zero, zero, -0.5 * mw, zero, 0.5 * mw], axis=1)
        mouth_y = np.stack(
            [
                cy,
                cy,
                my - lu,
                my - 0.75 * lu,
                my - lu,
                my - 0.2,
                my + 0.2 + mopen,
                my + 0.75 * ll + mopen,
                my + ll + mopen,
                my + 0.75 * ll + mopen,
            ],
            axis=1,
        )
        mouth_dz = np.array([-1.5, -1.5, 1.0, 1.2, 1.0, 0.5, 0.5, 1.0, 1.5, 1.0])
        mouth3 = self._surface(mouth_x, mouth_y, idp, mouth_dz)
        # Nose: bridge top, ridge L, ridge R, tip, wing L, wing R, subnasale.
        nl = _NOSE_Y + idp["nose_len"]
        nw = 6.5 * idp["nose_w"]
        npro = 15.0 * idp["nose_p"]
        nose_x = np.stack([zero, -2.5 + zero, 2.5 + zero, zero, -nw, nw, zero], axis=1)
        nose_y = np.stack([ey - 1.0, 0.5 * (ey + nl), 0.5 * (ey + nl), nl, nl - 1.2, nl - 1.2, nl + 3.8], axis=1)
        nose_dz = np.stack([zero, 0.55 * npro, 0.55 * npro, npro, 0.25 * npro, 0.25 * npro, 0.3 * npro], axis=1)
        nose_dz[:, 0] = 0.5
        nose3 = self._surface(nose_x, nose_y, idp, nose_dz)
        # Brows: inner, mid, outer per side, each with an upper and a lower edge point.
        bl = idp["brow_len"]
        by = ey - idp["brow_gap"] - brow_up
        bt = idp["brow_t"]
        arch, bang = idp["brow_arch"], idp["brow_angle"]
        bx = np.stack([ex - 9.0 * bl, ex + 0.5, ex + 10.5 * bl], axis=1)  # inner, mid, outer (right side)
        byy = np.stack([by, by - arch, by - bang], axis=1)
        bth = np.stack([bt, 0.9 * bt, 0.5 * bt], axis=1)
        brow_x = np.concatenate(
            [-bx, -bx[:, ::-1], bx, bx[:, ::-1]], axis=1
        )  # L upper, L lower rev, R upper, R lower rev
        brow_y = np.concatenate(
            [byy - bth / 2, (byy + bth / 2)[:, ::-1], byy - bth / 2, (byy + bth / 2)[:, ::-1]], axis=1
        )
        brows3 = self._surface(brow_x, brow_y, idp, 1.0)
        # A face mask (occluder) from the cheeks over the nose to the chin.
        mask_x = np.broadcast_to(np.array([-33.0, -16, -5, 0, 5, 16, 33, 31, 20, 0, -20, -31]), (n, 12)) * col(idp["W"])
        mask_y = np.broadcast_to(np.array([6.0, 2, 0, 0, 0, 2, 6, 28, 42, 52, 42, 28]), (n, 12))
        over_nose = np.array([0.0, 0, 6, 7, 6, 0, 0, 0, 0, 0, 0, 0])  # the mask drapes over the nose
        mask_dz = np.array([1.0, 3, 4, 4, 4, 3, 1, 1, 1, 1, 1, 1]) + over_nose * col(idp["nose_p"])

        # ---- rotation + alignment ----
        lm3 = np.stack([eyes3[:, 0], eyes3[:, 1], nose3[:, 3], mouth3[:, 0], mouth3[:, 1]], axis=1)
        lm_r = lm3 @ rot_t
        q = lm_r[..., 0] + 1j * lm_r[..., 1]
        tmpl = self._template[:, 0] + 1j * self._template[:, 1]
        qc = q - q.mean(axis=1, keepdims=True)
        tc = tmpl - tmpl.mean()
        a_sim = (np.conj(qc) * tc).sum(axis=1) / (np.abs(qc) ** 2).sum(axis=1)
        t_sim = tmpl.mean() - a_sim * q.mean(axis=1)
        # The aligner's error: a small random similarity about the image centre.
        centre = (S - 1) / 2.0 * (1 + 1j)
        jit = nup["jit_scale"] * np.exp(1j * nup["jit_rot"])
        shift = (nup["jit_shift"][:, 0] + 1j * nup["jit_shift"][:, 1]) * (S / 112.0)
        A = jit * a_sim
        T = jit * (t_sim - centre) + centre + shift
        g["scale"] = np.abs(A)

        def project(p3: np.ndarray) -> np.ndarray:
            """Head-frame points [N, M, 3] -> complex image positions [N, M]."""
            r = p3 @ rot_t
            return A[:, None] * (r[..., 0] + 1j * r[..., 1]) + T[:, None]

        lm = project(lm3)
        g["landmarks"] = np.stack([lm.real, lm.imag], axis=-1).astype(np.float32)

        # ---- polygons ----
        # Head silhouette.
        t = np.linspace(0.0, 1.0, _N_HEAD)
        yh = _HEAD_TOP + (_CHIN_Y - _HEAD_TOP) * np.sin(0.5 * np.pi * t) ** 1.3
        yh = np.broadcast_to(yh, (n, _N_HEAD))
        w, c, d = self._profile(yh, idp)
        g["head"] = _fixed(project(self._band(self._stretch(yh, idp), w, c, d, -np.pi, np.pi, yaw)))
        # Skin below the hairline: the arc of skin grows from the flat top of the hairline to the
        # sideburns.
        top = idp["hairline"]
        ys = col(top) + col(_CHIN_Y - top) * (1.0 - np.cos(0.5 * np.pi * np.linspace(0, 1, _N_SKIN)))
        w, c, d = self._profile(ys, idp)
        rise = _smoothstep((ys - col(top)) / np.maximum(col(idp["temple"] - top), 1.0))
        arc = col(idp["hairline_w"]) + (col(idp["side_arc"]) - col(idp["hairline_w"])) * rise
        bald = col(idp["style"] == 0)
        arc = np.where(bald, np.pi, arc)
        part = col(idp["part"])
        g["skin"] = _fixed(
            project(
                self._band(
                    self._stretch(ys, idp),
                    w,
                    c,
                    d,
                    -np.minimum(arc * (1 + part), np.pi),
                    np.minimum(arc * (1 - part), np.pi),
                    yaw,
                )
            )
        )
        # Hair: the head scaled up by the hair thickness, down to the hair's lower edge.
        ht = idp["hair_t"]
        yb = np.maximum(idp["hair_bottom"], idp["temple"] + 2.0)
        yhair = _HEAD_TOP + col(yb - _HEAD_TOP) * np.sin(0.5 * np.pi * np.linspace(0, 1, _N_HAIR)) ** 1.3
        w, c, d = self._profile(yhair, idp)
        grow = 1.0 + col(ht) / 42.0
        pivot_y, pivot_z = -8.0, -6.0
        g["hair"] = _fixed(
            project(
                self._band(
                    pivot_y + (yhair - pivot_y) * grow,
                    w * grow,
                    pivot_z + (c - pivot_z) * grow,
                    d * grow,
                    -np.pi,
                    np.pi,
                    yaw,
                )
            )
        )
        # Long hair hanging behind the head and shoulders.
        yl = -20.0 + col(idp["long_len"] + 20.0) * np.linspace(0, 1, 8)
        wl = col(idp["W"]) * (41.0 + col(ht)) + 0.15 * (yl + 20.0)
        g["long"] = _fixed(
            project(self._band(yl, wl, np.full_like(wl, -22.0), np.full_like(wl, 24.0), -np.pi, np.pi, yaw))
        )
        # Neck and clothes.
        yn = np.broadcast_to(np.linspace(15.0, 150.0, 6), (n, 6))
        wn = np.broadcast_to(21.0 * col(idp["neck"] * idp["W"]), yn.shape)
        g["neck"] = _fixed(
            project(self._band(yn, wn, np.full_like(wn, -12.0), np.full_like(wn, 20.0), -np.pi, np.pi, 0.6 * yaw))
        )
        yc = np.broadcast_to(np.array([86.0, 92.0, 100.0, 115.0, 140.0, 190.0]), (n, 6))
        wc = np.array([24.0, 45.0, 62.0, 76.0, 84.0, 88.0]) * col(idp["W"])
        g["clothes"] = _fixed(
            project(self._band(yc, wc, np.full_like(wc, -14.0), np.full_like(wc, 30.0), -np.pi, np.pi, 0.3 * yaw))
        )
        # Beard: lower face below the beard line (sideburn to chin); moustache above the lip.
        yd = col(idp["beard_top"]) + col(_CHIN_Y + 1.5 - idp["beard_top"]) * np.linspace(0, 1, 8)
        w, c, d = self._profile(yd, idp)
        g["beard"] = _fixed(project(self._band(self._stretch(yd, idp), w + 1.0, c, d + 1.0, -1.9, 1.9, yaw)))
        must_x = np.stack([-1.1 * mw, -0.5 * mw, zero, 0.5 * mw, 1.1 * mw, 0.5 * mw, zero, -0.5 * mw], axis=1)
        must_y = np.stack(
            [cy + 1.5, my - lu - 2.0, my - lu - 1.6, my - lu - 2.0, cy + 1.5, my - lu - 0.5, my - lu, my - lu - 0.5],
            axis=1,
        )
        g["moustache"] = _fixed(project(self._surface(must_x, must_y, idp, 1.5)))
        # Features.
        eyes = project(eyes3)
        g["eye_c"] = _fixed(eyes[:, 0:2])
        corner_vec = np.stack([eyes[:, 3] - eyes[:, 2], eyes[:, 5] - eyes[:, 4]], axis=1)  # inner-outer, per eye
        g["eye_angle"] = np.rad2deg(np.angle(corner_vec))
        # Half-width as seen; the eye's height shrinks with pitch a little, ignored.
        sc = col(g["scale"])
        g["eye_ax"] = np.stack([0.5 * np.abs(corner_vec), np.broadcast_to(sc * col(eh), (n, 2))], axis=-1)
        fore = np.clip(np.abs(corner_vec) / (2.0 * col(ew) * sc), 0.0, 1.0)
        iris_r = sc * col(idp["iris_r"] * eh)
        g["iris_ax"] = np.stack([iris_r * fore, np.broadcast_to(iris_r, fore.shape)], axis=-1)
        g["eye_vis"] = self._facing(eye_x[:, :2], eye_y[:, :2], idp, rot) * np.minimum(1.0, fore * 2.0)
        g["brows"] = _fixed(project(brows3)).reshape(n, 2, 6, 2)
        mouth = project(mouth3)
        g["mouth"] = _fixed(mouth)
        nose = project(nose3)
        g["nose"] = _fixed(nose)
        g["nose_vis"] = self._facing(nose_x[:, 4:6], nose_y[:, 4:6], idp, rot)
        # Ears: a disc on each side, normal pointing sideways and a little forward.
        ear_y = _EAR_Y + idp["ear_dy"]
        w_e, c_e, _ = self._profile(col(ear_y), idp)
        fl = idp["ear_flare"]
        ears3 = np.stack(
            [
                np.concatenate([-(w_e + 1.5), w_e + 1.5], 1),
                np.broadcast_to(col(ear_y), (n, 2)),
                np.broadcast_to(c_e - 4.0, (n, 2)),
            ],
            axis=-1,
        )
        ear_n = np.stack(
            [np.stack([-np.cos(fl), np.cos(fl)], 1), np.zeros((n, 2)), np.stack([np.sin(fl), np.sin(fl)], 1)], axis=-1
        )
        ear_face = (ear_n @ rot_t)[..., 2]
        g["ear_c"] = _fixed(project(ears3))
        es = idp["ear_s"] * g["scale"]
        g["ear_ax"] = np.stack(
            [col(es) * (1.5 + 5.5 * np.abs(ear_face)), np.broadcast_to(col(es) * 10.5, (n, 2))], axis=-1
        )
        g["ear_face"] = ear_face
        # In-plane angle of the head; pitch and roll barely tilt the ears, so they are ignored.
        g["head_angle"] = np.rad2deg(np.angle(A))
        # Marks.
        mxy = idp["mole_xy"]
        g["mole_c"] = _fixed(project(self._surface(mxy[..., 0], mxy[..., 1], idp, 0.3)))
        g["mole_vis"] = self._facing(mxy[..., 0], mxy[..., 1], idp, rot)
        sxy = idp["scar_xy"]
        half = 0.5 * idp["scar_len"]
        scar_x = np.stack([sxy[:, 0] - half * np.cos(idp["scar_dir"]), sxy[:, 0] + half * np.cos(idp["scar_dir"])], 1)
        scar_y = np.stack([sxy[:, 1] - half * np.sin(idp["scar_dir"]), sxy[:, 1] + half * np.sin(idp["scar_dir"])], 1)
        g["scar"] = _fixed(project(self._surface(scar_x, scar_y, idp, 0.3)))
        g["scar_vis"] = self._facing(scar_x, scar_y, idp, rot).min(axis=1)
        g["mask"] = _fixed(project(self._surface(mask_x, mask_y, idp, mask_dz)))
        # Texture box: the face-centred area the identity texture is stretched over.
        tc_ = project(self._surface(np.zeros((n, 1)), np.full((n, 1), -8.0), idp, -20.0))[:, 0]
        cos_y = np.cos(np.deg2rad(yaw))
        # Large enough to cover head and hair in any pose, so no edge of it ever shows.
        g["tex_box"] = np.stack(
            [tc_.real, tc_.imag, g["scale"] * 80.0 * np.maximum(cos_y, 0.75), g["scale"] * 90.0], axis=1
        )
        return g
