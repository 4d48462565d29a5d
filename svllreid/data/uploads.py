"""Query images that arrive as bytes from a client (``svllreid serve``): decoded only from the formats a
camera or a browser makes, within a pixel budget, then resized as files are (:func:`resized_pixels`)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import torch
from PIL import Image

from svllreid.data.loaders import decode_rgb, resized_pixels
from svllreid.errors import UploadError

__all__ = ["MAX_UPLOAD_PIXELS", "UPLOAD_FORMATS", "decode_upload"]

#: The formats an upload may be in. PIL can open many more (EPS runs Ghostscript, for one), which a
#: server has no reason to hand untrusted bytes to.
UPLOAD_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
#: Largest upload in pixels: a 48-megapixel phone photo passes, a decompression bomb does not.
MAX_UPLOAD_PIXELS = 50_000_000


def decode_upload(
    data: bytes,
    size: Sequence[int],
    interpolation: str = "bilinear",
    *,
    max_pixels: int = MAX_UPLOAD_PIXELS,
) -> torch.Tensor:
    """An uploaded image as uint8 ``[3, H, W]`` at ``size`` = (height, width), resized by
    ``interpolation`` as :func:`svllreid.data.loaders.read_resized` resizes files.

    Raises:
        UploadError: empty, not an image in one of :data:`UPLOAD_FORMATS` (415), more than
            ``max_pixels`` pixels (413), or damaged (400).
    """
    if not data:
        raise UploadError("the upload is empty; choose an image file (JPEG, PNG or WebP)")
    try:
        # Opening reads the header only; the pixel check below comes before any decoding. (PIL's own
        # decompression-bomb warning is not turned into an error here: filters are process-wide.)
        image = Image.open(io.BytesIO(data), formats=list(UPLOAD_FORMATS))
    except Image.UnidentifiedImageError:
        raise UploadError(
            f"the upload is not an image in a format the server reads ({', '.join(UPLOAD_FORMATS)})", status=415
        ) from None
    except Image.DecompressionBombError as err:
        raise UploadError(f"the image is too large to decode safely ({err})", status=413) from None
    except Exception as err:  # a known format whose header is cut or corrupt; PIL raises many types
        raise UploadError(f"the image is damaged and cannot be decoded ({type(err).__name__}: {err})") from None
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise UploadError(
                f"the image is {width}×{height} pixels; the server takes at most {max_pixels / 1e6:g} megapixels: "
                "send a smaller copy",
                status=413,
            )
        try:
            rgb = decode_rgb(image, size)  # a large JPEG at a reduced scale: less memory, less time
        except Exception as err:  # PIL raises many types for truncated or corrupt data
            raise UploadError(f"the image is damaged and cannot be decoded ({type(err).__name__}: {err})") from None
    return torch.from_numpy(resized_pixels(rgb, size, interpolation)).permute(2, 0, 1)
