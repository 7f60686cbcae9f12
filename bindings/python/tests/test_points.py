"""Point clouds from numpy arrays and PLY bytes: the values come back as given (arrays), as
written (PLY), and bad input is refused with the library's status."""
import struct
import unittest

import numpy as np

import libmm


class TestPoints(unittest.TestCase):
    def test_from_array_round_trip(self):
        rng = np.random.default_rng(3)
        xyz = rng.normal(size=(50, 3)).astype(np.float64)      # converted to float32
        rgb = rng.uniform(size=(50, 3)).astype(np.float32)
        with libmm.Points.from_array(xyz, rgb) as p:
            self.assertEqual(len(p), 50)
            np.testing.assert_array_equal(p.xyz, xyz.astype(np.float32))
            np.testing.assert_array_equal(p.rgb, rgb)
            self.assertIsNone(p.normals)
        with libmm.Points.from_array(xyz[:, ::-1]) as p:             # a strided view
            np.testing.assert_array_equal(p.xyz, xyz[:, ::-1].astype(np.float32))
            self.assertIsNone(p.rgb)

    def test_refusals(self):
        xyz = np.zeros((4, 3), np.float32)
        xyz[2, 1] = np.nan
        with self.assertRaises(libmm.MMError) as e:
            libmm.Points.from_array(xyz)
        self.assertEqual(e.exception.status, libmm.Status.ERR_ARG)
        with self.assertRaises(ValueError):
            libmm.Points.from_array(np.zeros((4, 2), np.float32))
        with self.assertRaises(libmm.MMError) as e:
            libmm.Points.from_array(np.zeros((1, 3)), np.full((1, 3), 2.0))
        self.assertEqual(e.exception.status, libmm.Status.ERR_ARG)
        with self.assertRaises(libmm.MMError) as e:
            libmm.Points.from_bytes(b"ply\nformat ascii 1.0\n")
        self.assertEqual(e.exception.status, libmm.Status.ERR_FORMAT)

    def test_ply_bytes_and_limit(self):
        head = (b"ply\nformat binary_big_endian 1.0\nelement vertex 2\nproperty float x\n"
                b"property float y\nproperty float z\nproperty uchar red\nproperty uchar green\n"
                b"property uchar blue\nend_header\n")
        body = struct.pack(">3f3B", 1.5, -2, 0.25, 255, 0, 51) + struct.pack(">3f3B", 0, 1, 2, 0, 0, 0)
        with libmm.Points.from_bytes(head + body) as p:
            np.testing.assert_array_equal(p.xyz, [[1.5, -2, 0.25], [0, 1, 2]])
            np.testing.assert_allclose(p.rgb, [[1, 0, 0.2], [0, 0, 0]], rtol=1e-7)
        with self.assertRaises(libmm.MMError) as e:
            libmm.Points.from_bytes(head + body, {"points_max_count": 1})
        self.assertEqual(e.exception.status, libmm.Status.ERR_LIMIT)


if __name__ == "__main__":
    unittest.main()
