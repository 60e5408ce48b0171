"""Parametric cartoon-face renderer: the built-in training and evaluation data (nothing to download).

A face is an identity (a fixed parameter vector: head shape, skin tone, hair, eyes, brows, nose,
mouth, ears, marks, glasses/beard, a low-frequency skin texture, a demographic group) seen under
per-sample nuisance (head pose, expression, lighting, background clutter, occluders, blur,
alignment jitter, sensor noise).

How a sample is made:

1. Parameters. Every random number comes from a counter-based hash of (seed, identity) for the
   identity's parameters and of (seed, identity, index) for the nuisance, so a sample depends
   only on those keys, whole batches are drawn with a few vectorised numpy operations, and no
   per-sample random generator has to be built.
2. Geometry. The head is a stack of horizontal elliptic slices (width, front and back depth per
   height) carrying ~30 keypoints (eye centres and corners, brows, nose bridge/tip/wings, lips,
   chin, ears). Keypoints are rotated by yaw, pitch and roll and projected orthographically. For
   each slice the visible arc at the current yaw is found in closed form, which gives the head
   silhouette, the hair region and the skin region below the hairline as polygons that change
   shape correctly with yaw (the far cheek disappears, the nose leaves the outline, the hair
   shows at the back of a profile).
3. Alignment. Like a detector + 5-point aligner, the similarity transform that maps the five
   projected landmarks onto the insightface template is applied to everything, then perturbed by
   a small random similarity (the aligner's error). The returned landmarks are the exact image
   positions of the five keypoints after all of this.
4. Drawing. OpenCV primitives with anti-aliasing and sub-pixel (``shift``) coordinates, back to
   front: background crop, long hair, neck and clothes, far ears, head, hair, skin, texture,
   marks, beard, eyes, brows, mouth, nose, near ears, glasses, occluder. Then blur, lighting
   (gradient, brightness, contrast, colour cast) and sensor noise with a few whole-image cv2
   calls. Backgrounds and noise are crops of banks rendered once per image size.

Difficulty is tuned with :class:`Nuisance` (strength of each nuisance), ``nuisance_scale`` (all
of them at once) and ``identity_scale`` (how different identities look).

Conventions: images are RGB uint8; coordinates are pixels (x right, y down, pixel centres at
integers, as cv2 and the insightface template use). Positive yaw turns the nose towards the
image's right, positive pitch raises it, positive roll tilts the head clockwise in the image.

Modules: ``rng`` (counter-based random numbers), ``constants`` (head model, palettes),
``banks`` (background and noise banks), ``identity`` and ``nuisance`` (parameters), ``geometry``
(projection and polygons), ``drawing`` (OpenCV drawing), ``renderer`` (:class:`FaceRenderer`).
"""

from __future__ import annotations

from fr_lightning.data.synthetic.constants import TEMPLATE_112
from fr_lightning.data.synthetic.nuisance import Nuisance
from fr_lightning.data.synthetic.renderer import FaceRenderer, RenderedBatch

__all__ = ["TEMPLATE_112", "FaceRenderer", "Nuisance", "RenderedBatch"]
