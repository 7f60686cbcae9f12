#!/usr/bin/python3
"""Generate the image test files and their references (run with Debian's /usr/bin/python3).

Writes tests/data/images/*.png|*.jpg and tests/data/images/reference.safetensors. The files are
committed; rerun this only to change the set. References come from PIL (decode) and from a NumPy
re-statement of HF transformers' CLIPImageProcessor / LlavaNextImageProcessor / LlavaNextProcessor
rules (preprocess, tiling, token counts), never from libmm.

PNG files are written by the small encoder below so that every colour type, bit depth, Adam7
interlacing and all five row filters are covered (PIL cannot write 16-bit RGB or interlaced PNG);
PIL then decodes them to make the reference. JPEG files are written by PIL (libjpeg-turbo).
"""
import io
import json
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image, ImageOps

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "images")
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


# ---------------------------------------------------------------------------------------------
# A PNG encoder (PNG spec, ISO/IEC 15948): any colour type / depth, optional Adam7, all filters.

def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def pack_rows(samples, bit_depth):
    """samples: (h, w*channels) integers -> list of packed byte rows."""
    rows = []
    for row in samples:
        if bit_depth == 16:
            rows.append(row.astype(">u2").tobytes())
        elif bit_depth == 8:
            rows.append(row.astype(np.uint8).tobytes())
        else:
            per_byte = 8 // bit_depth
            padded = np.zeros(-(-len(row) // per_byte) * per_byte, dtype=np.int64)
            padded[:len(row)] = row
            packed = bytearray()
            for i in range(0, len(padded), per_byte):
                b = 0
                for v in padded[i:i + per_byte]:
                    b = (b << bit_depth) | int(v)
                packed.append(b)
            rows.append(bytes(packed))
    return rows


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def filter_rows(rows, bpp, first_filter):
    """Filter each row with types cycling 0..4 (starting at first_filter)."""
    out = bytearray()
    prev = bytes(len(rows[0])) if rows else b""
    for i, row in enumerate(rows):
        ftype = (first_filter + i) % 5
        out.append(ftype)
        for x in range(len(row)):
            a = row[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            pred = [0, a, b, (a + b) // 2, paeth(a, b, c)][ftype]
            out.append((row[x] - pred) & 0xff)
        prev = row
    return bytes(out)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2)]  # (x0, y0, dx, dy)


def write_png(path, pixels, color_type, bit_depth, interlace=False, palette=None, trns=None):
    """pixels: (h, w, channels) sample values (palette indices for colour type 3)."""
    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    h, w, ch = pixels.shape
    bpp = max(1, ch * bit_depth // 8)
    if interlace:
        raw = b""
        for p, (x0, y0, dx, dy) in enumerate(ADAM7):
            sub = pixels[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                raw += filter_rows(pack_rows(sub.reshape(sub.shape[0], -1), bit_depth), bpp, p)
    else:
        raw = filter_rows(pack_rows(pixels.reshape(h, -1), bit_depth), bpp, 0)
    png = b"\x89PNG\r\n\x1a\n"
    png += chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, int(interlace)))
    if palette is not None:
        png += chunk(b"PLTE", bytes(np.asarray(palette, dtype=np.uint8).reshape(-1)))
    if trns is not None:
        png += chunk(b"tRNS", trns)
    png += chunk(b"IDAT", zlib.compress(raw, 9))
    png += chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


# ---------------------------------------------------------------------------------------------

def test_picture(w, h, seed):
    """Smooth colour gradients, a few hard edges and mild noise: exercises resize and JPEG."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 127 + 120 * np.sin(x / max(w, 1) * 5.1 + y / max(h, 1) * 1.3)
    g = 255 * y / max(h - 1, 1)
    b = np.where((x // 7 + y // 5) % 2 == 0, 40.0, 215.0)
    img = np.stack([r, g, b], axis=-1) + rng.normal(0, 6, (h, w, 3))
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def pil_rgb(path):
    """What the HF pipeline sees: PIL decode, EXIF orientation applied, convert('RGB')."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        return np.array(im.convert("RGB"))


def make_pngs(refs):
    rng = np.random.default_rng(7)
    pic = test_picture(23, 17, 1)
    grey = pic[..., 1]

    def png(name, pixels, ct, depth, **kw):
        path = os.path.join(OUT, name)
        write_png(path, pixels, ct, depth, **kw)
        refs[name] = pil_rgb(path)

    png("grey1.png", rng.integers(0, 2, (9, 13)), 0, 1)
    png("grey2_interlaced.png", rng.integers(0, 4, (11, 19)), 0, 2, interlace=True)
    png("grey4.png", rng.integers(0, 16, (7, 9)), 0, 4)
    png("grey8.png", grey, 0, 8)
    png("grey8_trns.png", grey, 0, 8, trns=struct.pack(">H", int(grey[0, 0])))
    png("greyalpha8.png", np.stack([grey, 255 - grey], -1), 4, 8)
    png("greyalpha16_interlaced.png",
        np.stack([grey.astype(np.int64) * 257 + 3, rng.integers(0, 65536, grey.shape)], -1), 4, 16,
        interlace=True)
    png("rgb8.png", pic, 2, 8)
    png("rgb8_interlaced.png", test_picture(37, 29, 2), 2, 8, interlace=True)
    png("rgb16.png", pic.astype(np.int64) * 256 + rng.integers(0, 256, pic.shape), 2, 16)
    rgba = np.concatenate([pic, rng.integers(0, 256, pic.shape[:2] + (1,))], -1)
    png("rgba8.png", rgba, 6, 8)
    png("rgba16_interlaced.png", rgba.astype(np.int64) * 257, 6, 16, interlace=True)
    palette = rng.integers(0, 256, (16, 3))
    idx = rng.integers(0, 16, (10, 14))
    png("palette4.png", idx, 3, 4, palette=palette)
    png("palette2_interlaced.png", idx % 4, 3, 2, interlace=True, palette=palette[:4])
    png("palette8_trns.png", idx * 3, 3, 8, palette=rng.integers(0, 256, (48, 3)),
        trns=bytes(rng.integers(0, 256, 20).astype(np.uint8)))
    png("palette1.png", idx % 2, 3, 1, palette=[[255, 0, 0], [0, 0, 255]])

    # 16-bit greyscale: PIL 9.4 opens it in mode "I" and convert('RGB') CLIPS values > 255 to 255
    # (a near-white image). libmm keeps the high byte, as PIL does for every other 16-bit PNG;
    # the reference below states that choice (high byte), not PIL's clip.
    g16 = grey.astype(np.int64) * 256 + rng.integers(0, 256, grey.shape)
    write_png(os.path.join(OUT, "grey16.png"), g16, 0, 16)
    with Image.open(os.path.join(OUT, "grey16.png")) as im:
        hi = (np.array(im).astype(np.int64) >> 8).astype(np.uint8)
    refs["grey16.png"] = np.repeat(hi[..., None], 3, -1)


def exif_app1(orientation, big_endian):
    """An APP1 Exif segment holding IFD0 with one Orientation (0x0112, SHORT) entry."""
    e = ">" if big_endian else "<"
    tiff = (b"MM" if big_endian else b"II") + struct.pack(e + "HI", 42, 8)
    tiff += struct.pack(e + "H", 1) + struct.pack(e + "HHI", 0x0112, 3, 1)
    tiff += struct.pack(e + "H", orientation) + b"\0\0" + struct.pack(e + "I", 0)
    body = b"Exif\0\0" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body


def make_jpegs(refs):
    pic = test_picture(37, 23, 3)

    def jpg(name, image, **kw):
        path = os.path.join(OUT, name)
        image.save(path, "JPEG", **kw)
        refs[name] = pil_rgb(path)

    img = Image.fromarray(pic)
    jpg("baseline444.jpg", img, quality=92, subsampling=0)
    jpg("baseline422.jpg", img, quality=85, subsampling=1)
    jpg("progressive420.jpg", img, quality=80, subsampling=2, progressive=True)
    jpg("grey.jpg", img.convert("L"), quality=90)
    jpg("grey_progressive.jpg", img.convert("L"), quality=75, progressive=True)
    cmyk = np.concatenate([255 - pic, np.full(pic.shape[:2] + (1,), 30, np.uint8)], -1)
    jpg("cmyk_adobe.jpg", Image.fromarray(cmyk, "CMYK"), quality=95)
    small = Image.fromarray(test_picture(20, 12, 4))
    for o in range(2, 9):
        exif = Image.Exif()
        exif[0x0112] = o
        jpg("exif_orient%d.jpg" % o, small, quality=90, exif=exif.tobytes())
    # Big-endian ("MM") EXIF, spliced in after SOI by hand.
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    path = os.path.join(OUT, "exif_be_orient6.jpg")
    with open(path, "wb") as f:
        f.write(data[:2] + exif_app1(6, True) + data[2:])
    refs["exif_be_orient6.jpg"] = pil_rgb(path)


def make_limit_files():
    """Headers that declare huge images, with no pixel data behind them."""
    for name, w, h in (("huge_side.png", 20000, 8), ("huge_area.png", 9000, 9000)):
        png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(png + chunk(b"IDAT", zlib.compress(b"\0" * 64)))
    # A tiny JPEG whose SOF0 says 60000 x 60000 (the rest of the file as PIL wrote it).
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)
    with open(os.path.join(OUT, "huge.jpg"), "wb") as f:
        f.write(bytes(data))


# ---------------------------------------------------------------------------------------------
# Preprocessing references: HF transformers' rules restated with NumPy on PIL's resize.

def hf_rescale_normalize(u8, mean, std):
    """CLIPImageProcessor rescale (float64 product -> float32) + normalize (float32), CHW."""
    x = (u8.astype(np.float64) * (1 / 255)).astype(np.float32)
    x = (x - np.array(mean, np.float32)) / np.array(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def pil_resize(u8, w, h, resample):
    return np.array(Image.fromarray(u8).resize((w, h), resample=resample))


def hf_shortest_edge(u8, s, resample):
    h, w = u8.shape[:2]
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(s * long / short)
    nw, nh = (s, new_long) if w <= h else (new_long, s)
    return pil_resize(u8, nw, nh, resample)


def hf_center_crop(u8, ch, cw):
    h, w = u8.shape[:2]
    top, left = (h - ch) // 2, (w - cw) // 2
    if top >= 0 and left >= 0:
        return u8[top:top + ch, left:left + cw]
    nh, nw = max(ch, h), max(cw, w)
    canvas = np.zeros((nh, nw, 3), np.uint8)
    tp, lp = -(-(nh - h) // 2), -(-(nw - w) // 2)
    canvas[tp:tp + h, lp:lp + w] = u8
    top, left = top + tp, left + lp
    return canvas[max(0, top):min(nh, top + ch), max(0, left):min(nw, left + cw)]


def clip_processor(u8, s, resample=Image.BICUBIC, crop=None):
    crop = s if crop is None else crop
    return hf_rescale_normalize(hf_center_crop(hf_shortest_edge(u8, s, resample), crop, crop),
                                CLIP_MEAN, CLIP_STD)


def expand2square(u8, fill):
    """LLaVA-1.5's pad: centred on a square of the fill colour (int(mean * 255))."""
    h, w = u8.shape[:2]
    if w == h:
        return u8
    side = max(w, h)
    out = np.empty((side, side, 3), np.uint8)
    out[:] = np.array(fill, np.uint8)
    if w > h:
        out[(w - h) // 2:(w - h) // 2 + h] = u8
    else:
        out[:, (h - w) // 2:(h - w) // 2 + w] = u8
    return out


def select_best_resolution(orig_hw, pinpoints_hw):
    oh, ow = orig_hw
    best, best_eff, best_waste = None, 0, float("inf")
    for h, w in pinpoints_hw:
        scale = min(w / ow, h / oh)
        dw, dh = int(ow * scale), int(oh * scale)
        eff = min(dw * dh, ow * oh)
        waste = w * h - eff
        if eff > best_eff or (eff == best_eff and waste < best_waste):
            best, best_eff, best_waste = (h, w), eff, waste
    return best


def anyres(u8, s, pinpoints_hw, resample=Image.BICUBIC):
    """LlavaNextImageProcessor: global view (resize to s x s) then the grid tiles, row-major."""
    import math
    oh, ow = u8.shape[:2]
    th, tw = select_best_resolution((oh, ow), pinpoints_hw)
    sw, sh = tw / ow, th / oh
    if sw < sh:
        nw, nh = tw, min(math.ceil(oh * sw), th)
    else:
        nh, nw = th, min(math.ceil(ow * sh), tw)
    resized = pil_resize(u8, nw, nh, resample)
    px, rx = divmod(tw - nw, 2)
    py, ry = divmod(th - nh, 2)
    padded = np.pad(resized, ((py, py + ry), (px, px + rx), (0, 0)), constant_values=0)
    views = [pil_resize(u8, s, s, resample)]
    for i in range(0, th, s):
        for j in range(0, tw, s):
            views.append(padded[i:i + s, j:j + s])
    out = [clip_processor(v, s, resample) for v in views]
    return np.stack(out), (th, tw)


def llava_next_tokens(oh, ow, s, patch, pinpoints_hw, extra):
    """LlavaNextProcessor._get_number_of_features (unpadded grid + one newline per row + base)."""
    bh, bw = select_best_resolution((oh, ow), pinpoints_hw)
    sh, sw = bh // s, bw // s
    ph = pw = s // patch
    ch, cw = ph * sh, pw * sw
    if ow / oh > cw / ch:
        nh = int(round(oh * (cw / ow), 7))
        ch -= (ch - nh) // 2 * 2
    else:
        nw = int(round(ow * (ch / oh), 7))
        cw -= (cw - nw) // 2 * 2
    return ch * cw + ch + ph * pw + extra


def make_preprocess(tensors):
    src_path = os.path.join(OUT, "resize_src.png")
    write_png(src_path, test_picture(45, 33, 5), 2, 8)
    src = pil_rgb(src_path)
    tensors["resize_src.png.rgb"] = src
    for fname, filt in (("bilinear", Image.BILINEAR), ("bicubic", Image.BICUBIC)):
        for w, h in ((20, 15), (90, 66), (17, 50), (45, 10), (1, 1), (3, 100), (200, 7), (44, 33)):
            tensors["resize.%s.%dx%d" % (fname, w, h)] = pil_resize(src, w, h, filt)
    tensors["clip.s24"] = clip_processor(src, 24)
    tensors["clip.s24.bilinear"] = clip_processor(src, 24, Image.BILINEAR)
    tensors["clip.s40_crop48"] = clip_processor(src, 40, crop=48)  # crop larger: zero padding
    tensors["squash.s24"] = hf_rescale_normalize(pil_resize(src, 24, 24, Image.BICUBIC),
                                                 CLIP_MEAN, CLIP_STD)
    fill = [int(m * 255) for m in CLIP_MEAN]
    tensors["pad.s24"] = clip_processor(expand2square(src, fill), 24)
    tall = np.ascontiguousarray(src.transpose(1, 0, 2))
    tensors["pad_tall.s24"] = clip_processor(expand2square(tall, fill), 24)

    # A thin strip: the shortest-edge resize is 1600 x 24 before the crop.
    thin = test_picture(200, 3, 6)
    tensors["thin.input"] = thin
    tensors["thin.clip.s24"] = clip_processor(thin, 24)
    tensors["thin.pad.s24"] = clip_processor(expand2square(thin, fill), 24)

    pinpoints = [[16, 32], [32, 16], [32, 32], [48, 16], [16, 48]]     # (height, width)
    tensors["anyres.pinpoints_hw"] = np.array(pinpoints, np.int64)
    pv, best = anyres(src, 16, pinpoints)
    tensors["anyres.s16"] = pv
    tensors["anyres.s16.best_hw"] = np.array(best, np.int64)
    pv, best = anyres(tall, 16, pinpoints)
    tensors["anyres_tall.s16"] = pv
    tensors["anyres_tall.s16.best_hw"] = np.array(best, np.int64)

    # Token counts of LLaVA-1.6 (CLIP-L/14 at 336, its default pinpoints, class token dropped).
    pp16 = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
    rows = []
    for w, h in ((640, 480), (480, 640), (336, 336), (1000, 200), (200, 1000), (1920, 1080),
                 (50, 60), (1, 1), (4000, 3000), (700, 701), (1023, 337)):
        rows.append([w, h] + list(select_best_resolution((h, w), pp16)) +
                    [llava_next_tokens(h, w, 336, 14, pp16, 0)])
    tensors["tokens.llava16"] = np.array(rows, np.int64)


# ---------------------------------------------------------------------------------------------

def write_safetensors(path, tensors):
    dtypes = {np.dtype(np.uint8): "U8", np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        data = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtypes[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    os.makedirs(OUT, exist_ok=True)
    refs = {}
    make_pngs(refs)
    make_jpegs(refs)
    make_limit_files()
    tensors = {name + ".rgb": rgb for name, rgb in refs.items()}
    make_preprocess(tensors)
    write_safetensors(os.path.join(OUT, "reference.safetensors"), tensors)
    print("wrote %d images, %d reference tensors to %s" % (len(refs), len(tensors), OUT),
          file=sys.stderr)


if __name__ == "__main__":
    main()
