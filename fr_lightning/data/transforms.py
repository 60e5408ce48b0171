"""Image normalisation, geometric helpers and the YAML-configured augmentation of real images."""

from __future__ import annotations

import os
import threading
import warnings
from typing import Any, NamedTuple

import cv2
import numpy as np
import torch
from torch import Tensor

from fr_lightning.data.resume import key_uniform

#: insightface's 5-point order: left eye, right eye, nose, left mouth, right mouth.
#: A horizontal flip swaps left and right.
FLIP_ORDER = (1, 0, 2, 4, 3)


def normalize_images(images: np.ndarray) -> Tensor:
    """uint8 RGB ``[N, H, W, 3]`` (or one ``[H, W, 3]``) -> float ``[N, 3, H, W]`` in [-1, 1]: ``(x/255 - 0.5)/0.5``."""
    arr = np.ascontiguousarray(images)
    t = torch.from_numpy(arr)
    if t.ndim == 3:
        t = t.unsqueeze(0)
    return t.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


#: ``(v/255 - 0.5)/0.5`` for every uint8 value, computed exactly as :func:`normalize_images` does.
_NORMALISED = torch.arange(256, dtype=torch.float32).div_(127.5).sub_(1.0).numpy()


def normalize_image(image: np.ndarray) -> Tensor:
    """One uint8 RGB ``[H, W, 3]`` image (any strides, e.g. a flipped view) -> float ``[3, H, W]``.

    Bit-identical to ``normalize_images(image)[0]`` in one pass (a table lookup that also
    transposes and un-flips), about 2.5x cheaper per image: the per-sample path of the streaming
    source uses it.
    """
    return torch.from_numpy(np.take(_NORMALISED, np.asarray(image).transpose(2, 0, 1)))


def hflip_landmarks(landmarks: np.ndarray, width: int) -> np.ndarray:
    """Mirror 5-point landmarks ``[..., 5, 2]`` for an image of ``width`` px (x -> W-1-x, left/right swapped)."""
    out = landmarks[..., FLIP_ORDER, :].copy()
    out[..., 0] = (width - 1) - out[..., 0]
    return out


# --------------------------------------------------------------------------- real-image helpers
# (Used by the RecordIO / folder / shard sources; the synthetic source does its own flip.)


class ImageSizeWarning(UserWarning):
    """Face images are not the square size the model expects (they are resized, non-square ones stretched)."""


#: What :class:`SizeCheck` does by default: ``warn`` (once), ``refuse`` or ``ignore``; the
#: ``FR_IMAGE_SIZE`` environment variable sets it for every dataset and command at once.
SIZE_POLICIES = ("warn", "refuse", "ignore")


class SizeCheck:
    """Warns once (or refuses) when a dataset's face images are not ``size``×``size``.

    Resizing an aligned crop of another size is harmless; stretching a non-square image (a
    photo, an unaligned crop) silently distorts faces. One check per dataset: the first image
    of another size triggers one :class:`ImageSizeWarning` naming it, later ones only count.

    Args:
        size: the expected side in px.
        dataset: what the message calls the dataset (a folder, a file list, a set name).
        policy: ``warn``, ``refuse`` (a ``ValueError`` naming the image) or ``ignore``; None:
            the ``FR_IMAGE_SIZE`` environment variable, else ``warn``.
    """

    def __init__(self, size: int, dataset: str = "the images", policy: str | None = None) -> None:
        policy = policy or os.environ.get("FR_IMAGE_SIZE", "") or "warn"
        if policy not in SIZE_POLICIES:
            raise ValueError(f"image size policy must be one of {SIZE_POLICIES} (FR_IMAGE_SIZE), got {policy!r}")
        self.size, self.dataset, self.policy = int(size), dataset, policy
        self.count = 0  # images of another size seen (in this process)
        self.warned = False
        self._lock = threading.Lock()  # fr embed loads images on two threads: one warning, not two

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]  # DataLoader workers get a check (and a lock) of their own
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __call__(self, shape: tuple[int, ...], where: str) -> None:
        """Note one image of ``shape`` (``(H, W, ...)``) at ``where`` that is about to be resized."""
        h, w = int(shape[0]), int(shape[1])
        if (h, w) == (self.size, self.size) or self.policy == "ignore":
            return
        what = f"{w}x{h}, " + ("not square: it is stretched" if h != w else "resized") + f" to {self.size}x{self.size}"
        if self.policy == "refuse":
            raise ValueError(f"{where}: image is {what} (align the photos first: fr data align --detector; FR_IMAGE_SIZE=warn to allow)")
        with self._lock:
            self.count += 1
            first, self.warned = not self.warned, True
        if first:
            warnings.warn(
                f"{self.dataset}: images are not {self.size}x{self.size}, e.g. {where} is {what}; faces are expected "
                "as aligned square crops (fr data align). This warns once per dataset; FR_IMAGE_SIZE=refuse stops instead",
                ImageSizeWarning,
                stacklevel=3,
            )


#: Per-process checks for callers that pass none (one warning per expected size and process).
_PROCESS_CHECKS: dict[int, SizeCheck] = {}


def resize_face(
    image: np.ndarray, landmarks: np.ndarray | None, size: int, check: SizeCheck | None = None, where: str = "an image"
) -> tuple[np.ndarray, np.ndarray | None]:
    """Resize an RGB uint8 image to ``size``×``size`` (no-op when it already is); landmarks are scaled to match.

    Shrinking uses area interpolation (no aliasing), enlarging bilinear. Non-square images are
    stretched: face crops are expected to be aligned squares already (see :mod:`fr_lightning.data.align`);
    ``check`` (the dataset's :class:`SizeCheck`) warns once or refuses, naming ``where``; without
    one, a check shared by the whole process does (once per ``size`` and DataLoader worker).
    """
    h, w = image.shape[:2]
    if h == size and w == size:
        return image, landmarks
    if check is None:
        check = _PROCESS_CHECKS.setdefault(size, SizeCheck(size, "training/evaluation images"))
    check(image.shape, where)
    interp = cv2.INTER_AREA if size < max(h, w) else cv2.INTER_LINEAR
    out = cv2.resize(image, (size, size), interpolation=interp)
    if landmarks is not None:
        landmarks = landmarks * np.array([size / w, size / h], dtype=np.float32)
    return out, landmarks


class Augmented(NamedTuple):
    """One augmented sample: the RGB uint8 image, its landmarks (or None) and whether it was mirrored."""

    image: np.ndarray
    landmarks: np.ndarray | None
    flipped: bool


class Augment:
    """Training augmentation for real face crops, configured from YAML.

    The flip is done here (so 5-point landmarks swap left/right correctly); everything else is
    an ``albumentations.Compose`` built lazily in each process. The training sources pass each
    sample's key (a function of seed, epoch and sample index), which decides the flip and
    re-seeds the pipeline, so results do not depend on workers or resume; called without a key,
    the process's own stream is used, seeded from ``torch.initial_seed()`` (which differs per
    DataLoader worker and follows ``seed_everything``).
    Each photometric/geometric op has a probability (0 disables it) and a range.

    Args:
        hflip: mirror half of the images.
        random_resized_crop: probability of a random crop resized back to the input size.
        crop_scale: range of the crop's area as a fraction of the image.
        brightness_contrast: probability of a random brightness/contrast change.
        brightness_limit: brightness change range (±, fraction of 255).
        contrast_limit: contrast change range (±).
        grayscale: probability of converting to grey (kept 3-channel).
        blur: probability of a Gaussian blur.
        blur_sigma: Gaussian sigma range in px.
        downscale: probability of down-then-up scaling (simulates low-resolution probes).
        downscale_range: factor range of the intermediate size.
        jpeg: probability of JPEG re-compression.
        jpeg_quality: JPEG quality range.
    """

    def __init__(
        self,
        hflip: bool = True,
        random_resized_crop: float = 0.0,
        crop_scale: tuple[float, float] = (0.8, 1.0),
        brightness_contrast: float = 0.0,
        brightness_limit: float = 0.2,
        contrast_limit: float = 0.2,
        grayscale: float = 0.0,
        blur: float = 0.0,
        blur_sigma: tuple[float, float] = (0.5, 1.5),
        downscale: float = 0.0,
        downscale_range: tuple[float, float] = (0.25, 0.75),
        jpeg: float = 0.0,
        jpeg_quality: tuple[int, int] = (30, 95),
    ) -> None:
        for name, p in (
            ("random_resized_crop", random_resized_crop),
            ("brightness_contrast", brightness_contrast),
            ("grayscale", grayscale),
            ("blur", blur),
            ("downscale", downscale),
            ("jpeg", jpeg),
        ):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"Augment.{name} is a probability in [0, 1], got {p}")
        self.hflip = hflip
        self.random_resized_crop = random_resized_crop
        self.crop_scale = tuple(crop_scale)
        self.brightness_contrast = brightness_contrast
        self.brightness_limit = brightness_limit
        self.contrast_limit = contrast_limit
        self.grayscale = grayscale
        self.blur = blur
        self.blur_sigma = tuple(blur_sigma)
        self.downscale = downscale
        self.downscale_range = tuple(downscale_range)
        self.jpeg = jpeg
        self.jpeg_quality = tuple(int(q) for q in jpeg_quality)
        self._pid: int | None = None
        self._rng: np.random.Generator | None = None
        self._pipeline: Any = None
        self._pipeline_size: tuple[int, int] | None = None

    @property
    def uses_albumentations(self) -> bool:
        """True when any op besides the flip is enabled."""
        return any(
            p > 0
            for p in (
                self.random_resized_crop,
                self.brightness_contrast,
                self.grayscale,
                self.blur,
                self.downscale,
                self.jpeg,
            )
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_pid=None, _rng=None, _pipeline=None, _pipeline_size=None)
        return state

    def _state(self) -> np.random.Generator:
        pid = os.getpid()
        if self._rng is None or self._pid != pid:
            self._rng = np.random.default_rng([torch.initial_seed() % (1 << 63), 0xFACE])
            self._pid, self._pipeline = pid, None
        return self._rng

    def _build(self, height: int, width: int) -> Any:
        import albumentations as A

        ops: list[Any] = []
        if self.random_resized_crop > 0:
            ops.append(
                A.RandomResizedCrop(size=(height, width), scale=self.crop_scale, ratio=(0.9, 1.1), p=self.random_resized_crop)
            )
        if self.brightness_contrast > 0:
            ops.append(
                A.RandomBrightnessContrast(
                    brightness_limit=self.brightness_limit, contrast_limit=self.contrast_limit, p=self.brightness_contrast
                )
            )
        if self.grayscale > 0:
            ops.append(A.ToGray(num_output_channels=3, p=self.grayscale))
        if self.blur > 0:
            ops.append(A.GaussianBlur(sigma_limit=self.blur_sigma, blur_limit=0, p=self.blur))
        if self.downscale > 0:
            ops.append(
                A.Downscale(
                    scale_range=self.downscale_range,
                    interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR},
                    p=self.downscale,
                )
            )
        if self.jpeg > 0:
            ops.append(A.ImageCompression(compression_type="jpeg", quality_range=self.jpeg_quality, p=self.jpeg))
        seed = int(self._state().integers(0, 2**31 - 1))
        # Only the crop moves pixels; photometric ops leave landmarks alone (and albumentations
        # warns about a keypoint processor with nothing to process).
        kp = A.KeypointParams(format="xy", remove_invisible=False) if self.random_resized_crop > 0 else None
        return A.Compose(ops, keypoint_params=kp, seed=seed)

    def __call__(self, image: np.ndarray, landmarks: np.ndarray | None = None, key: int | None = None) -> Augmented:
        """Augment one RGB uint8 ``[H, W, 3]`` image (and its ``[5, 2]`` landmarks); inputs are not modified.

        ``key`` (a per-sample 64-bit key, :func:`fr_lightning.data.resume.sample_keys`) makes every
        random choice of this sample a function of the key alone (the training sources pass one);
        without it the choices come from this process's own stream.
        """
        if key is None:
            flipped = bool(self.hflip and self._state().random() < 0.5)
        else:
            flipped = bool(self.hflip and key_uniform(key) < 0.5)
        if flipped:
            image = image[:, ::-1]
            if landmarks is not None:
                landmarks = hflip_landmarks(landmarks, image.shape[1])
        if self.uses_albumentations:
            h, w = image.shape[:2]
            if self._pipeline is None or self._pipeline_size != (h, w):
                self._pipeline, self._pipeline_size = self._build(h, w), (h, w)
            if key is not None:
                self._pipeline.set_random_seed(int(key) >> 33)  # every op re-seeded from this sample's key
            if self.random_resized_crop > 0:
                kp = np.zeros((0, 2), np.float32) if landmarks is None else np.asarray(landmarks, np.float32)
                out = self._pipeline(image=np.ascontiguousarray(image), keypoints=kp)
                if landmarks is not None:
                    landmarks = np.asarray(out["keypoints"], np.float32).reshape(-1, 2)[:, :2]
            else:
                out = self._pipeline(image=np.ascontiguousarray(image))
            image = out["image"]
        return Augmented(image, landmarks, flipped)
