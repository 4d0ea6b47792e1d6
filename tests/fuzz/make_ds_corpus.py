#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_ds_read: a few tiny valid files of every
format and a few broken ones, each a few hundred bytes at most. The target
writes every input under every extension, so a seed's name only says what it
was made as. Deterministic (gzip mtime 0): rerunning changes nothing.

    python3 tests/fuzz/make_ds_corpus.py   # from the repository root
"""
import gzip
import io
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "ds_read")


def vecs(rows, fmt, size):
    out = b""
    for r in rows:
        out += struct.pack("<i", len(r)) + b"".join(struct.pack("<" + fmt, v) for v in r)
    return out


def fbin(rows, fmt):
    out = struct.pack("<II", len(rows), len(rows[0]))
    for r in rows:
        out += b"".join(struct.pack("<" + fmt, v) for v in r)
    return out


def npy(descr, shape, payload, fortran=False, major=1, dict_text=None):
    if dict_text is None:
        dict_text = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (
            descr, "True" if fortran else "False", shape)
    prefix = 10 if major == 1 else 12
    total = (prefix + len(dict_text) + 1 + 63) // 64 * 64
    hlen = total - prefix
    head = b"\x93NUMPY" + bytes([major, 0])
    head += struct.pack("<H", hlen) if major == 1 else struct.pack("<I", hlen)
    head += dict_text.encode() + b" " * (hlen - len(dict_text) - 1) + b"\n"
    return head + payload


def idx(type_code, dims, payload):
    head = bytes([0, 0, type_code, len(dims)])
    return head + b"".join(struct.pack(">I", d) for d in dims) + payload


def gz(data):
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="") as f:
        f.write(data)
    return buf.getvalue()


F = [[0.5, -1.0, 2.0, 3.25], [1.0, 0.0, -0.0, 7.5], [9.0, 8.0, 7.0, 6.0]]
IMG = bytes(range(18))

seeds = {
    "valid_3x4.fvecs": vecs(F, "f", 4),
    "valid_2x3.ivecs": vecs([[1, 2, 3], [-4, 5, 6]], "i", 4),
    "valid_2x5.bvecs": vecs([[1, 2, 3, 4, 5], [250, 251, 252, 253, 254]], "B", 1),
    "valid_3x4.fbin": fbin(F, "f"),
    "valid_2x3.u8bin": fbin([[1, 2, 3], [4, 5, 255]], "B"),
    "valid_2x3.i8bin": fbin([[-1, 2, -128], [4, 127, 0]], "b"),
    "valid_2x2.ibin": fbin([[1, -2], [300000, 4]], "i"),
    "valid_f4.npy": npy("<f4", "(3, 4)", b"".join(struct.pack("<f", v) for r in F for v in r)),
    "valid_u1.npy": npy("|u1", "(2, 3)", bytes([1, 2, 3, 4, 5, 6])),
    "valid_i1_v2.npy": npy("|i1", "(3, 1)", bytes([255, 0, 1]), major=2),
    "valid_i4_1d.npy": npy("<i4", "(2,)", struct.pack("<ii", 7, -7)),
    "valid-idx3-ubyte": idx(0x08, [2, 3, 3], IMG),
    "valid-idx1-ubyte": idx(0x08, [4], bytes([3, 1, 4, 1])),
    "valid-idx3-ubyte.gz": gz(idx(0x08, [2, 3, 3], IMG)),
    "valid-idx1-ubyte.gz": gz(idx(0x08, [4], bytes([3, 1, 4, 1]))),
    "bad_truncated.fvecs": vecs(F, "f", 4)[:-5],
    "bad_inconsistent.fvecs": vecs([F[0], F[1][:2], F[2]], "f", 4),
    "bad_nan.fvecs": vecs([[1.0, float("nan")], [float("inf"), 0.0]], "f", 4),
    "bad_dim0.fvecs": struct.pack("<ii", 0, 0),
    "bad_trailing.fbin": fbin(F, "f") + b"xyz",
    "bad_fortran.npy": npy("<f4", "(1, 1)", struct.pack("<f", 1.0), fortran=True),
    "bad_bigendian.npy": npy(">f4", "(1, 1)", struct.pack(">f", 1.0)),
    "bad_dict.npy": npy(None, None, b"\0" * 4,
                        dict_text="{'descr': '<f4', 'shape': (1, 1), 'fortran_order': Fals"),
    "bad_3d.npy": npy("<f4", "(1, 1, 1)", struct.pack("<f", 1.0)),
    "bad_type-idx3": idx(0x0D, [1, 2], struct.pack(">ff", 1.0, 2.0)),
    "bad_short-idx3-ubyte.gz": gz(idx(0x08, [5, 3, 3], IMG)),
    "bad_not_idx.gz": gz(b"hello, world"),
    "bad_one_byte": b"\x00",
}

os.makedirs(OUT, exist_ok=True)
for name, data in sorted(seeds.items()):
    assert len(data) <= 400, name
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
print("wrote %d seeds to %s" % (len(seeds), OUT))
