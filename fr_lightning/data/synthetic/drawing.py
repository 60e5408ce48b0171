"""Drawing: OpenCV primitives back to front, then blur, lighting and sensor noise."""

from __future__ import annotations

import math

import cv2
import numpy as np

from fr_lightning.data.synthetic.banks import _NOISE_STD, _noise_bank, _scene_bank
from fr_lightning.data.synthetic.constants import _AA, _MASK_RGB, _ONE, _SHIFT, _SKIN_L, _SKIN_RGB


class DrawingMixin:
    """Draws a batch of projected faces for :class:`FaceRenderer`."""

    image_size: int

    def _draw_batch(
        self, images: np.ndarray, idp: dict[str, np.ndarray], nup: dict[str, np.ndarray], g: dict[str, np.ndarray]
    ) -> None:
        """Draw every sample of a batch into ``images`` (in place)."""
        S = self.image_size
        px = S / 112.0
        n = len(images)
        # Colours (float RGB lists; cv2 takes them as Scalars).
        skin = idp["skin"]
        contrast = idp["contrast"][:, None]
        hair = idp["hair"]
        dark = np.array([30.0, 22.0, 22.0])
        skin_l = skin.tolist()
        hair_l = hair.tolist()
        long_l = (hair * 0.8).tolist()
        neck_l = (skin * 0.82).tolist()
        ear_l = np.clip(skin * np.array([0.97, 0.88, 0.86]), 0, 255).tolist()
        ear_in_l = (skin * 0.7).tolist()
        nose_l = (skin * 0.93).tolist()
        nose_line_l = (skin * (1.0 - 0.3 * contrast)).tolist()
        nostril_l = (skin * (1.0 - 0.6 * contrast)).tolist()
        lid_l = (skin + (dark - skin) * (0.2 + 0.7 * contrast)).tolist()
        brow_l = (
            skin + (hair * 0.85 - skin) * np.clip(idp["brow_dark"][:, None] * (0.5 + 0.5 * contrast), 0, 1)
        ).tolist()
        sclera_l = np.clip(235.0 - 25.0 * (1.0 - contrast), 0, 255).repeat(3, 1).tolist()
        iris_l = idp["iris"].tolist()
        lip_l = idp["lip"].tolist()
        lip_u_l = (idp["lip"] * 0.9).tolist()
        mole_l = (skin * 0.45).tolist()
        scar_l = np.where(idp["scar_light"][:, None], np.minimum(skin * 1.15 + 10, 255), skin * 0.72).tolist()
        beard_l = (skin + (hair * 0.9 - skin) * idp["beard_den"][:, None]).tolist()
        glasses_l = idp["glasses_rgb"].tolist()
        clothes_l = nup["clothes"].tolist()
        occ_l = nup["occ_rgb"].tolist()
        # Geometry as Python lists (indexing lists is much cheaper than numpy scalars).
        eye_c = g["eye_c"].tolist()
        eye_ax = _fixed_real(g["eye_ax"]).tolist()
        iris_ax = _fixed_real(g["iris_ax"]).tolist()
        eye_angle = g["eye_angle"].tolist()
        eye_vis = g["eye_vis"].tolist()
        ear_c = g["ear_c"].tolist()
        ear_ax = _fixed_real(g["ear_ax"]).tolist()
        ear_in_ax = _fixed_real(g["ear_ax"] * np.array([0.55, 0.7])).tolist()
        ear_face = g["ear_face"].tolist()
        ear_angle = g["head_angle"].tolist()
        nose_vis = g["nose_vis"].tolist()
        mole_c = g["mole_c"].tolist()
        mole_r = _fixed_real(idp["mole_r"] * g["scale"][:, None]).tolist()
        mole_vis = g["mole_vis"].tolist()
        n_moles = idp["n_moles"].tolist()
        scar = idp["scar"].tolist()
        scar_vis = g["scar_vis"].tolist()
        scar_pts = g["scar"].tolist()
        style = idp["style"].tolist()
        beard = idp["beard"].tolist()
        moustache = idp["moustache"].tolist()
        glasses = idp["glasses"].tolist()
        glasses_round = idp["glasses_round"].tolist()
        gl_ax = _fixed_real(
            np.stack([11.0 * idp["glasses_s"], np.where(idp["glasses_round"], 9.5, 7.0) * idp["glasses_s"]], 1)
            * g["scale"][:, None]
        ).tolist()
        occ = nup["occ"].tolist()
        blur = nup["blur"].tolist()
        noise = nup["noise"].tolist()
        bg = nup["bg"].tolist()
        scene = nup["scene"].tolist()
        scene_xy = nup["scene_xy"].tolist()
        scene_flip = nup["scene_flip"].tolist()
        bg_alpha = nup["bg_alpha"].tolist()
        n_shapes = nup["n_shapes"].tolist()
        noise_xy = nup["noise_xy"].tolist()
        offset = nup["offset"].tolist()
        tex_box = g["tex_box"].tolist()
        lid_t = max(1, int(round(1.3 * px)))
        line_t = max(1, int(round(1.0 * px)))
        head, skin_p, hair_p, long_p = g["head"], g["skin"], g["hair"], g["long"]
        neck_p, clothes_p, beard_p, must_p = g["neck"], g["clothes"], g["beard"], g["moustache"]
        brows, mouth, nose, face_mask = g["brows"], g["mouth"], g["nose"], g["mask"]
        mask = np.zeros((S, S), np.uint8)
        scenes, noise_bank = _scene_bank(S), _noise_bank(S)
        gain_maps, bg_grads = nup["gain"], nup["bg_grad"]
        shape_u, mouth_open, textures = nup["shape_u"].tolist(), nup["open"].tolist(), idp["texture"]
        for k in range(n):
            img = images[k]
            # Background: a crop of a cluttered scene blended with a colour gradient.
            if bg[k] > 0.0:
                ox, oy = scene_xy[k]
                crop = scenes[scene[k], oy : oy + S, ox : ox + S]
                img[:] = crop[:, ::-1] if scene_flip[k] else crop
                grad = cv2.resize(bg_grads[k], (S, S), interpolation=cv2.INTER_LINEAR)
                a = bg_alpha[k]
                cv2.addWeighted(img, a, grad, 1.0 - a, 0.0, dst=img)
                for j in range(n_shapes[k]):
                    self._clutter(img, shape_u[k][j])
            else:
                img[:] = 128
            st = style[k]
            if st == 3:
                cv2.fillPoly(img, [long_p[k]], long_l[k], _AA, _SHIFT)
            cv2.fillPoly(img, [neck_p[k]], neck_l[k], _AA, _SHIFT)
            cv2.fillPoly(img, [clothes_p[k]], clothes_l[k], _AA, _SHIFT)
            # Ears that face away are drawn behind the head (only the part sticking out shows).
            for e in (0, 1):
                if ear_face[k][e] < 0.3:
                    cv2.ellipse(img, ear_c[k][e], ear_ax[k][e], ear_angle[k], 0, 360, ear_l[k], -1, _AA, _SHIFT)
            cv2.fillPoly(img, [head[k]], skin_l[k], _AA, _SHIFT)
            if st != 0:
                cv2.fillPoly(img, [hair_p[k]], hair_l[k], _AA, _SHIFT)
                cv2.fillPoly(img, [skin_p[k]], skin_l[k], _AA, _SHIFT)
            # Identity texture over head and hair.
            mask[:] = 0
            cv2.fillPoly(mask, [head[k]], 255, cv2.LINE_8, _SHIFT)
            if st != 0:
                cv2.fillPoly(mask, [hair_p[k]], 255, cv2.LINE_8, _SHIFT)
            self._texture(img, mask, textures[k], tex_box[k])
            # Marks.
            for m in range(n_moles[k]):
                if mole_vis[k][m] > 0.25:
                    cv2.ellipse(
                        img, mole_c[k][m], (mole_r[k][m], mole_r[k][m]), 0.0, 0, 360, mole_l[k], -1, _AA, _SHIFT
                    )
            if scar[k] and scar_vis[k] > 0.2:
                cv2.line(img, scar_pts[k][0], scar_pts[k][1], scar_l[k], line_t, _AA, _SHIFT)
            if beard[k]:
                cv2.fillPoly(img, [beard_p[k]], beard_l[k], _AA, _SHIFT)
            if moustache[k]:
                cv2.fillPoly(img, [must_p[k]], beard_l[k], _AA, _SHIFT)
            # Eyes and brows (far side first).
            order = (0, 1) if ear_face[k][0] < ear_face[k][1] else (1, 0)
            for e in order:
                if eye_vis[k][e] > 0.08:
                    c, ax, ang = eye_c[k][e], eye_ax[k][e], eye_angle[k][e]
                    cv2.ellipse(img, c, ax, ang, 0, 360, sclera_l[k], -1, _AA, _SHIFT)
                    if ax[1] > 0.9 * _ONE * px:
                        cv2.ellipse(img, c, iris_ax[k][e], ang, 0, 360, iris_l[k], -1, _AA, _SHIFT)
                        pax = iris_ax[k][e]
                        cv2.ellipse(
                            img, c, (pax[0] // 2, pax[1] // 2), ang, 0, 360, (12.0, 10.0, 10.0), -1, _AA, _SHIFT
                        )
                    cv2.ellipse(img, c, ax, ang, 180, 360, lid_l[k], lid_t, _AA, _SHIFT)
                    cv2.fillPoly(img, [brows[k, e]], brow_l[k], _AA, _SHIFT)
            # Mouth.
            mk = mouth[k]
            if mouth_open[k] > 0.6:
                cv2.fillPoly(img, [mk[[0, 5, 1, 6]]], (70.0, 25.0, 30.0), _AA, _SHIFT)
            cv2.fillPoly(img, [mk[[0, 2, 3, 4, 1, 5]]], lip_u_l[k], _AA, _SHIFT)
            cv2.fillPoly(img, [mk[[0, 6, 1, 9, 8, 7]]], lip_l[k], _AA, _SHIFT)
            # Nose: shaded hull (shows as a bump on profiles), nostrils, a ridge line when turned.
            nk = nose[k]
            cv2.fillPoly(img, [cv2.convexHull(nk)], nose_l[k], _AA, _SHIFT)
            for e in (0, 1):
                if nose_vis[k][e] > 0.2:
                    p = nk[4 + e]
                    q = nk[6]
                    cv2.line(
                        img,
                        ((2 * p[0] + q[0]) // 3, (2 * p[1] + q[1]) // 3),
                        ((p[0] + 2 * q[0]) // 3, (p[1] + 2 * q[1]) // 3),
                        nostril_l[k],
                        lid_t,
                        _AA,
                        _SHIFT,
                    )
            far = 0 if ear_face[k][0] < ear_face[k][1] else 1
            cv2.line(img, nk[0].tolist(), nk[1 + far].tolist(), nose_line_l[k], line_t, _AA, _SHIFT)
            cv2.line(img, nk[1 + far].tolist(), nk[3].tolist(), nose_line_l[k], line_t, _AA, _SHIFT)
            # Ears facing the camera are drawn on top.
            for e in (0, 1):
                if ear_face[k][e] >= 0.3:
                    cv2.ellipse(img, ear_c[k][e], ear_ax[k][e], ear_angle[k], 0, 360, ear_l[k], -1, _AA, _SHIFT)
                    cv2.ellipse(img, ear_c[k][e], ear_in_ax[k][e], ear_angle[k], 0, 360, ear_in_l[k], -1, _AA, _SHIFT)
            if glasses[k]:
                for e in (0, 1):
                    if eye_vis[k][e] > 0.08:
                        cv2.ellipse(
                            img, eye_c[k][e], gl_ax[k], eye_angle[k][e], 0, 360, glasses_l[k], line_t, _AA, _SHIFT
                        )
            if occ[k]:
                self._occluder(img, occ[k], nup["occ_u"][k], occ_l[k], eye_c[k], face_mask[k], g["scale"][k])
            # Optics and sensor: blur, lighting (gain map incl. contrast and cast), noise.
            if blur[k] > 0.25:
                ks = 2 * min(3, int(2.5 * blur[k] + 0.5)) + 1
                cv2.GaussianBlur(img, (ks, ks), blur[k], dst=img)
            gain = cv2.resize(gain_maps[k], (S, S), interpolation=cv2.INTER_LINEAR)
            cv2.multiply(img, gain, dst=img, scale=1.0 / 128.0)
            nx, ny = noise_xy[k]
            w = noise[k] / _NOISE_STD
            cv2.addWeighted(img, 1.0, noise_bank[ny : ny + S, nx : nx + S], w, offset[k] - 128.0 * w, dst=img)

    def _texture(self, img: np.ndarray, mask: np.ndarray, grid: np.ndarray, box: list[float]) -> None:
        """Multiply the masked head area by the identity's texture grid stretched over ``box``."""
        S = self.image_size
        cx, cy, hw, hh = box
        x0, y0 = int(cx - hw), int(cy - hh)
        w, h = max(2, int(2 * hw)), max(2, int(2 * hh))
        tex = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        ax0, ay0, ax1, ay1 = max(0, x0), max(0, y0), min(S, x0 + w), min(S, y0 + h)
        if ax1 <= ax0 or ay1 <= ay0:
            return
        region = img[ay0:ay1, ax0:ax1]
        mod = cv2.multiply(region, tex[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0], scale=1.0 / 128.0)
        cv2.copyTo(mod, mask[ay0:ay1, ax0:ax1], region)

    def _clutter(self, img: np.ndarray, u: list[float]) -> None:
        """Draw one random shape (from six uniforms) on the background."""
        S = self.image_size
        kind, x, y, size, hue, ang = u
        lum = 30.0 + 190.0 * ((hue * 7.31) % 1.0)
        col = (lum + 60.0 * (hue - 0.5), lum + 60.0 * (((hue * 3.77) % 1.0) - 0.5), lum - 60.0 * (hue - 0.5))
        cx, cy = int(x * S), int(y * S)
        r = int((0.05 + 0.25 * size) * S)
        if kind < 0.4:
            cv2.circle(img, (cx, cy), r, col, -1, _AA)
        elif kind < 0.8:
            cv2.rectangle(img, (cx - r, cy - r // 2), (cx + r, cy + r), col, -1)
        else:
            dx, dy = int(S * math.cos(6.28 * ang)), int(S * math.sin(6.28 * ang))
            cv2.line(img, (cx - dx, cy - dy), (cx + dx, cy + dy), col, max(1, r // 4), _AA)

    def _occluder(
        self,
        img: np.ndarray,
        kind: int,
        u: np.ndarray,
        col: list[float],
        eye_c: list[list[int]],
        face_mask: np.ndarray,
        scale: float,
    ) -> None:
        """Draw an occluder: 1 sunglasses, 2 hand, 3 hat brim, 4 mask, 5 bar."""
        S = self.image_size
        u0, u1, u2, u3, u4, u5 = u.tolist()
        f = scale * _ONE
        if kind == 1:
            tint = (20.0 + 40.0 * u0, 20.0 + 30.0 * u1, 25.0 + 40.0 * u2)
            ax = (int(11.5 * f), int(8.0 * f))
            for c in eye_c:
                cv2.ellipse(img, c, ax, 0.0, 0, 360, tint, -1, _AA, _SHIFT)
            cv2.line(img, eye_c[0], eye_c[1], tint, max(1, int(2 * scale)), _AA, _SHIFT)
        elif kind == 2:
            # A hand: palm plus fingers, skin of a random tone, over the lower face.
            tone = (
                np.interp(u3, _SKIN_L, _SKIN_RGB[:, 0]),
                np.interp(u3, _SKIN_L, _SKIN_RGB[:, 1]),
                np.interp(u3, _SKIN_L, _SKIN_RGB[:, 2]),
            )
            tone = tuple(float(t) for t in tone)
            cx, cy = (0.2 + 0.6 * u0) * S, (0.55 + 0.4 * u1) * S
            ang = -60.0 + 120.0 * u2
            r = 16.0 * scale
            cv2.ellipse(
                img,
                (int(cx * _ONE), int(cy * _ONE)),
                (int(r * _ONE), int(1.2 * r * _ONE)),
                ang,
                0,
                360,
                tone,
                -1,
                _AA,
                _SHIFT,
            )
            t = math.radians(ang - 90.0)
            for j in range(4):
                off = (j - 1.5) * 0.55 * r
                fx = cx + off * math.cos(t + math.pi / 2) + 1.5 * r * math.cos(t)
                fy = cy + off * math.sin(t + math.pi / 2) + 1.5 * r * math.sin(t)
                cv2.ellipse(
                    img,
                    (int(fx * _ONE), int(fy * _ONE)),
                    (int(0.25 * r * _ONE), int(0.8 * r * _ONE)),
                    ang,
                    0,
                    360,
                    tone,
                    -1,
                    _AA,
                    _SHIFT,
                )
        elif kind == 3:
            # A hat brim across the forehead, its lower edge between hairline and brows.
            y = (0.12 + 0.22 * u0) * S
            tilt = (u1 - 0.5) * 0.25 * S
            pts = (
                np.array([[-0.2 * S, -0.2 * S], [1.2 * S, -0.2 * S], [1.2 * S, y + tilt], [-0.2 * S, y - tilt]]) * _ONE
            )
            cv2.fillPoly(img, [pts.astype(np.int32)], col, _AA, _SHIFT)
        elif kind == 4:
            # A face mask from the cheeks over the nose to the chin.
            mc = _MASK_RGB[min(3, int(4 * u0))].tolist()
            cv2.fillPoly(img, [cv2.convexHull(face_mask)], mc, _AA, _SHIFT)
        else:
            # A bar (microphone, pole, another person's arm) across the image.
            x0, y0 = u0 * S, u1 * S
            a = math.pi * u2
            dx, dy = S * math.cos(a), S * math.sin(a)
            cv2.line(
                img,
                (int((x0 - dx) * _ONE), int((y0 - dy) * _ONE)),
                (int((x0 + dx) * _ONE), int((y0 + dy) * _ONE)),
                col,
                max(1, int((4 + 8 * u3) * S / 112)),
                _AA,
                _SHIFT,
            )


def _fixed_real(x: np.ndarray) -> np.ndarray:
    """Real lengths -> non-negative int32 fixed point."""
    return np.maximum(np.rint(x * _ONE), 0).astype(np.int32)
