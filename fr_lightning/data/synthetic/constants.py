"""Constants of the renderer: drawing precision, the head model and the colour palettes."""

from __future__ import annotations

import cv2
import numpy as np

from fr_lightning.data.align import TEMPLATE_112 as ALIGN_TEMPLATE_112

#: insightface's 5-point template for 112×112 crops, as float32 for drawing.
TEMPLATE_112 = ALIGN_TEMPLATE_112.astype(np.float32)

_SHIFT = 4  # fractional bits of the fixed-point coordinates handed to cv2
_ONE = float(1 << _SHIFT)
_AA = cv2.LINE_AA

# --------------------------------------------------------------------------------------------
# Head model (units: pixels of a 112 crop; x right, y down, z towards the camera)
# --------------------------------------------------------------------------------------------

# Head profile: half-width, front depth and back depth of the horizontal slice at each height.
_PROF_Y = np.array([-66, -60, -50, -38, -25, -12, 0, 12, 22, 32, 40, 46, 50], np.float64)
_PROF_W = np.array([0.0, 19, 29, 35, 38.5, 40, 40, 39, 37, 33, 26, 17, 6])
_PROF_F = np.array([-6.0, 18, 31, 38, 41, 42, 41, 42, 41, 40, 38, 34, 27])
_PROF_B = np.array([-6.0, -30, -44, -52, -55, -54, -50, -42, -30, -18, -6, 4, 12])
_HEAD_TOP, _CHIN_Y = -66.0, 50.0
# Bumps that identity parameters scale: jaw width, cheek fullness, chin width.
_BUMP_Y = np.array([-100, 0, 8, 12, 18, 22, 28, 32, 36, 42, 45, 48, 52, 100], np.float64)
_JAW_B = np.array([0, 0, 0, 0, 0, 0.3, 0.8, 1.0, 0.8, 0.3, 0.1, 0, 0, 0])
_CHEEK_B = np.array([0, 0, 0.6, 1.0, 0.8, 0.4, 0.1, 0, 0, 0, 0, 0, 0, 0])
_CHIN_B = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0.3, 0.7, 1.0, 1.0, 1.0])

_EYE_X, _EYE_Y = 17.6, -8.5
_NOSE_Y = 11.7
_MOUTH_X, _MOUTH_Y = 14.6, 32.3
_EAR_Y = 0.0
_N_SKIN, _N_HAIR, _N_HEAD = 16, 14, 18  # slices per polygon
_TEX = 7  # side of the identity texture grid

_GROUP_TONE = np.array([(0.68, 0.95), (0.48, 0.72), (0.28, 0.50), (0.12, 0.34)])
_GROUP_CONTRAST = np.array([1.0, 0.9, 0.78, 0.66])
_SKIN_L = np.array([0.0, 0.3, 0.55, 0.75, 1.0])
_SKIN_RGB = np.array([[52, 34, 26], [112, 74, 54], [178, 128, 95], [222, 178, 146], [250, 224, 206]], np.float64)
_HAIR_RGB = np.array(
    [[22, 18, 16], [58, 38, 26], [112, 76, 46], [205, 170, 105], [150, 68, 34], [160, 158, 155]], np.float64
)
_HAIR_P = np.array(
    [
        [0.20, 0.30, 0.20, 0.18, 0.06, 0.06],
        [0.55, 0.35, 0.05, 0.00, 0.00, 0.05],
        [0.75, 0.20, 0.00, 0.00, 0.00, 0.05],
        [0.85, 0.10, 0.00, 0.00, 0.00, 0.05],
    ]
)
_IRIS_RGB = np.array([[100, 62, 32], [48, 32, 22], [70, 115, 170], [80, 125, 72], [125, 98, 52]], np.float64)
_IRIS_P = np.array(
    [
        [0.35, 0.10, 0.30, 0.12, 0.13],
        [0.55, 0.30, 0.05, 0.03, 0.07],
        [0.40, 0.60, 0.00, 0.00, 0.00],
        [0.30, 0.70, 0.00, 0.00, 0.00],
    ]
)
# Hair styles: bald, short, medium, long, bangs.
_STYLE_P = np.array([0.06, 0.34, 0.25, 0.22, 0.13])
_GLASSES_RGB = np.array([[20, 20, 20], [90, 60, 30], [170, 170, 175], [120, 20, 30]], np.float64)
_MASK_RGB = np.array([[150, 190, 225], [235, 235, 235], [30, 30, 35], [90, 110, 160]], np.float64)
