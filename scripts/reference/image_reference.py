#!/usr/bin/env python3
"""Independent reference for mmtune's image pipeline (src/data/image.cpp): PIL + numpy, as the
Python recipes preprocess images (LaVIN: torchvision Resize((S, S), BICUBIC) + ToTensor + Normalize;
LLaVA-1.5: expand2square with the mean colour + CLIPImageProcessor; CLIP: CLIPImageProcessor's
shortest-edge resize + centre crop; all of them resize with PIL).

  python scripts/reference/image_reference.py --dir DIR

Writes test images into DIR (8-bit RGB / grey / RGBA / grey+alpha / palette PNGs, 16-bit grey and RGB
PNGs, RGB and grey JPEGs, a few uniform images for hand-derived checks), DIR/manifest.json and
DIR/reference.safetensors holding, per image, `decoded/<name>` (PIL's convert('RGB') pixels, uint8
[H, W, 3]), `resize/<W>x<H>/<filter>` (plain Image.resize of rgb_97x61.png, uint8 [H, W, 3])
and, per case, `u8/<key>` (the S x S image after resizing, uint8 [S, S, 3]) and
`norm/<key>` (ToTensor + Normalize, float32 [3, S, S]).

16-bit images: PIL's convert('RGB') clips 16-bit grey at 255 and keeps the high byte of 16-bit RGB;
mmtune scales instead (round(v * 255 / 65535)), so the reference decodes those from the written
array with the same rule and runs the PIL pipeline from there.
"""
import argparse
import json
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors.numpy import save_file

NORMS = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
}
FILTERS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}
# (preprocess, interpolation, norm, size)
CASES = [
    ("resize", "bicubic", "imagenet", 224),  # LaVIN
    ("pad_square", "bicubic", "clip", 48),  # LLaVA-1.5 (336 in real runs)
    ("resize_center_crop", "bicubic", "clip", 40),  # CLIP
    ("resize", "bilinear", "imagenet", 31),
    ("pad_square", "bilinear", "imagenet", 57),
    ("resize_center_crop", "bilinear", "clip", 23),
]
# Plain resizes of rgb_97x61.png to (W, H): down, up, mixed, one axis only, and both sides of the
# rule that makes Pillow 13 run the vertical pass first ((h - H) > 2 (w - W) with H < h).
SHAPES = [(40, 20), (90, 10), (80, 26), (79, 25), (97, 30), (50, 61), (200, 150), (150, 30), (20, 100),
          (224, 224), (31, 31), (13, 7), (96, 60), (1, 1)]


def write_png(path, a):
    """PNG writer for uint8/uint16 arrays [H, W, C], C in 1..4 (PIL cannot write 16-bit RGB)."""
    h, w, c = a.shape
    depth = 16 if a.dtype == np.uint16 else 8
    color = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    raw = a.astype(">u2" if depth == 16 else "u1").reshape(h, -1).tobytes()
    stride = len(raw) // h
    rows = b"".join(b"\x00" + raw[y * stride:(y + 1) * stride] for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0))
                           + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def test_pattern(rng, h, w, c):
    """Smooth gradients + sharp edges + noise: exercises both the kernel and the antialiasing."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    chans = []
    for k in range(c):
        smooth = 0.5 + 0.4 * np.sin(x / (3.0 + 5 * k) + y / (7.0 + k)) * np.cos(y / 11.0)
        edges = ((x // (4 + k) + y // 5) % 2) * 0.3
        chans.append(smooth * 0.7 + edges + rng.normal(0, 0.08, (h, w)))
    return np.clip(np.stack(chans, -1), 0, 1)


def make_images(d, rng):
    """Writes the images; returns {name: (file, rgb uint8 [H, W, 3] as mmtune should decode it or None)}."""
    imgs = {}

    def save_pil(name, pil, **kw):
        pil.save(d / name, **kw)
        imgs[name] = None  # the reference decodes with PIL

    def u8(a):
        return np.round(a * 255).astype(np.uint8)

    save_pil("rgb_300x200.png", Image.fromarray(u8(test_pattern(rng, 200, 300, 3))))
    save_pil("rgb_97x61.png", Image.fromarray(u8(test_pattern(rng, 61, 97, 3))))
    save_pil("rgb_37x53.png", Image.fromarray(u8(test_pattern(rng, 53, 37, 3))))
    save_pil("rgb_224x224.png", Image.fromarray(u8(test_pattern(rng, 224, 224, 3))))
    save_pil("rgb_1000x13.png", Image.fromarray(u8(test_pattern(rng, 13, 1000, 3))))
    save_pil("gray_120x90.png", Image.fromarray(u8(test_pattern(rng, 90, 120, 1))[..., 0], "L"))
    save_pil("rgba_64x80.png", Image.fromarray(u8(test_pattern(rng, 80, 64, 4)), "RGBA"))
    save_pil("la_50x51.png", Image.fromarray(u8(test_pattern(rng, 51, 50, 2)), "LA"))
    save_pil("palette_70x40.png", Image.fromarray(u8(test_pattern(rng, 40, 70, 3))).quantize(colors=32))
    save_pil("photo_320x240.jpg", Image.fromarray(u8(test_pattern(rng, 240, 320, 3))), quality=90)
    save_pil("gray_90x70.jpg", Image.fromarray(u8(test_pattern(rng, 70, 90, 1))[..., 0], "L"), quality=85)
    # 16-bit: reference pixels scaled as mmtune defines it
    for name, c in (("gray16_100x60.png", 1), ("rgb16_45x90.png", 3)):
        a = np.round(test_pattern(rng, 60 if c == 1 else 90, 100 if c == 1 else 45, c) * 65535).astype(np.uint16)
        write_png(d / name, a)
        rgb = ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
        imgs[name] = np.repeat(rgb, 3, -1) if c == 1 else rgb
    # uniform images for hand-derived checks in the C++ test
    write_png(d / "const_gray_77.png", np.full((20, 30, 1), 77, np.uint8))
    write_png(d / "const_gray16_65535.png", np.full((20, 30, 1), 65535, np.uint16))
    write_png(d / "const_gray16_25700.png", np.full((20, 30, 1), 25700, np.uint16))  # = 100 * 257
    write_png(d / "const_rgb16.png", np.tile(np.array([65535, 0, 25700], np.uint16), (20, 30, 1)))
    write_png(d / "const_rgba_transparent.png", np.tile(np.array([10, 200, 30, 0], np.uint8), (20, 30, 1)))
    Image.new("RGB", (30, 20), (10, 200, 30)).save(d / "const_rgb.jpg", quality=95)
    write_png(d / "strip_4000x1.png", np.tile(np.array([1, 2, 3], np.uint8), (1, 4000, 1)))  # pixel-limit checks
    return imgs


def expand2square(img, fill):  # LLaVA's llava/mm_utils.py
    w, h = img.size
    if w == h:
        return img
    side = max(w, h)
    out = Image.new(img.mode, (side, side), fill)
    out.paste(img, (0, (w - h) // 2) if w > h else ((h - w) // 2, 0))
    return out


def preprocess(img, prep, interp, norm, size):
    f = FILTERS[interp]
    if prep == "resize":
        img = img.resize((size, size), f)
    elif prep == "pad_square":
        img = expand2square(img, tuple(int(m * 255) for m in NORMS[norm][0])).resize((size, size), f)
    else:  # CLIPImageProcessor: shortest edge -> size, then centre crop
        w, h = img.size
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(size * long / short)
        nw, nh = (size, new_long) if w <= h else (new_long, size)
        img = img.resize((nw, nh), f)
        left, top = (nw - size) // 2, (nh - size) // 2
        img = img.crop((left, top, left + size, top + size))
    u8 = np.asarray(img, dtype=np.uint8)
    mean, std = (np.array(v, np.float32)[:, None, None] for v in NORMS[norm])
    x = u8.transpose(2, 0, 1).astype(np.float32) / np.float32(255)  # ToTensor
    return u8, ((x - mean) / std).astype(np.float32)  # Normalize


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    args = ap.parse_args()
    d = Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    imgs = make_images(d, np.random.default_rng(7))
    tensors, cases = {}, []
    for name, rgb in imgs.items():
        img = Image.open(d / name).convert("RGB") if rgb is None else Image.fromarray(rgb, "RGB")
        tensors[f"decoded/{name}"] = np.ascontiguousarray(np.asarray(img, dtype=np.uint8))
        for prep, interp, norm, size in CASES:
            key = f"{name}/{prep}/{interp}/{norm}/{size}"
            u8, x = preprocess(img, prep, interp, norm, size)
            tensors[f"u8/{key}"] = np.ascontiguousarray(u8)
            tensors[f"norm/{key}"] = np.ascontiguousarray(x)
            cases.append({"image": name, "preprocess": prep, "interpolation": interp, "norm": norm, "size": size,
                          "key": key})
    resizes = []
    src = Image.open(d / "rgb_97x61.png").convert("RGB")
    for w, h in SHAPES:
        for interp, f in FILTERS.items():
            key = f"{w}x{h}/{interp}"
            tensors[f"resize/{key}"] = np.ascontiguousarray(np.asarray(src.resize((w, h), f), dtype=np.uint8))
            resizes.append({"width": w, "height": h, "interpolation": interp, "key": key})
    save_file(tensors, str(d / "reference.safetensors"))
    (d / "manifest.json").write_text(json.dumps({"images": sorted(imgs), "cases": cases, "resizes": resizes}, indent=1))
    print(f"{d}: {len(imgs)} images, {len(cases)} cases")


if __name__ == "__main__":
    main()
