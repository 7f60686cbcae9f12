"""Images from files, bytes and caller pixels, checked against PIL's decoding (the reference the
library promises to match) and against the pixels given."""
import os
import unittest
import warnings

import numpy as np
from PIL import Image as PILImage

import libmm

from fixtures import ROOT

IMAGES = os.path.join(ROOT, "tests", "data", "images")


def pil_rgb(path):
    with warnings.catch_warnings():  # PIL's advice about palette transparency
        warnings.simplefilter("ignore")
        with PILImage.open(path) as im:
            return np.asarray(im.convert("RGB"))


class TestDecode(unittest.TestCase):
    def test_png_files_equal_pil(self):
        # (16-bit grey is left out: PIL clips it where libmm keeps the high byte, as PIL does
        # for every other 16-bit PNG; tests/test_image.c covers it)
        for name in ("rgb8.png", "rgba8.png", "palette8_trns.png", "rgb16.png",
                     "rgb8_interlaced.png", "greyalpha8.png"):
            path = os.path.join(IMAGES, name)
            with self.subTest(name=name):
                img = libmm.Image.open(path)
                ref = pil_rgb(path)
                self.assertEqual(img.size, (ref.shape[1], ref.shape[0]))
                np.testing.assert_array_equal(img.to_numpy(), ref)

    def test_from_bytes_equals_from_file(self):
        path = os.path.join(IMAGES, "baseline444.jpg")
        with open(path, "rb") as f:
            data = f.read()
        a, b = libmm.Image.open(path), libmm.Image.from_bytes(data)
        self.assertEqual(a.tobytes(), b.tobytes())
        self.assertEqual(libmm.Image.from_bytes(bytearray(data)).tobytes(), a.tobytes())
        self.assertEqual(libmm.Image.from_bytes(memoryview(data)).tobytes(), a.tobytes())
        # JPEG decoding agrees with PIL's (same libjpeg-turbo) to within one level
        diff = np.abs(a.to_numpy().astype(int) - pil_rgb(path).astype(int))
        self.assertLessEqual(diff.max(), 1)

    def test_bad_data_and_limits(self):
        with open(os.path.join(IMAGES, "rgb8.png"), "rb") as f:
            data = f.read()
        with self.assertRaises(libmm.MMError) as cm:
            libmm.Image.from_bytes(data[:len(data) // 2])
        self.assertEqual(cm.exception.status, libmm.Status.ERR_FORMAT)
        with self.assertRaises(libmm.MMError) as cm:
            libmm.Image.from_bytes(b"GIF89a....")
        self.assertEqual(cm.exception.status, libmm.Status.ERR_FORMAT)
        with self.assertRaises(libmm.MMError) as cm:
            libmm.Image.from_bytes(b"")
        self.assertIn(cm.exception.status, (libmm.Status.ERR_FORMAT, libmm.Status.ERR_ARG))
        with PILImage.open(os.path.join(IMAGES, "rgb8.png")) as im:
            w, h = im.size
        with self.assertRaises(libmm.MMError) as cm:
            libmm.Image.open(os.path.join(IMAGES, "rgb8.png"),
                             options={"image_max_side": max(w, h) - 1})
        self.assertEqual(cm.exception.status, libmm.Status.ERR_LIMIT)
        with self.assertRaises(libmm.MMError) as cm:
            libmm.Image.open(os.path.join(IMAGES, "no-such-file.png"))
        self.assertEqual(cm.exception.status, libmm.Status.ERR_IO)


class TestFromPixels(unittest.TestCase):
    def setUp(self):
        rng = np.random.default_rng(7)
        self.rgba = rng.integers(0, 256, size=(5, 7, 4), dtype=np.uint8)
        self.rgb = np.ascontiguousarray(self.rgba[:, :, :3])

    def test_numpy_layouts(self):
        self.assertEqual(libmm.Image.from_pixels(self.rgb).size, (7, 5))
        np.testing.assert_array_equal(libmm.Image.from_pixels(self.rgb).to_numpy(), self.rgb)
        # 4 channels: alpha dropped
        np.testing.assert_array_equal(libmm.Image.from_pixels(self.rgba).to_numpy(), self.rgb)
        bgr = np.ascontiguousarray(self.rgb[:, :, ::-1])
        np.testing.assert_array_equal(
            libmm.Image.from_pixels(bgr, format="BGR").to_numpy(), self.rgb)
        # views: every other row (row stride twice the width), a column window, a flipped image
        for view in (self.rgb[::2], self.rgb[:, 2:6], self.rgb[::-1], self.rgba[1:4, :, :3]):
            np.testing.assert_array_equal(libmm.Image.from_pixels(view).to_numpy(), view)

    def test_bytes_with_stride(self):
        padded = np.zeros((5, 7 * 3 + 5), np.uint8)  # 5 bytes of padding after each row
        padded[:, :21] = self.rgb.reshape(5, 21)
        img = libmm.Image.from_pixels(padded.tobytes(), 7, 5, "RGB", stride=26)
        self.assertEqual(img.tobytes(), self.rgb.tobytes())
        img = libmm.Image.from_pixels(self.rgba.tobytes(), 7, 5, "RGBA")
        self.assertEqual(img.tobytes(), self.rgb.tobytes())

    def test_pixel_errors(self):
        with self.assertRaises(ValueError):
            libmm.Image.from_pixels(b"\0" * 10, 7, 5)
        with self.assertRaises(ValueError):
            libmm.Image.from_pixels(self.rgb.astype(np.float32))
        with self.assertRaises(ValueError):
            libmm.Image.from_pixels(self.rgb.tobytes(), 7, 5, "CMYK")
        with self.assertRaises(libmm.MMError) as cm:
            libmm.Image.from_pixels(b"\0" * 3, 0, 1)
        self.assertEqual(cm.exception.status, libmm.Status.ERR_ARG)


if __name__ == "__main__":
    unittest.main()
