"""The case list of ``bench/bad_input_sweep.py``: every class of issue 18, plus seeded random
header mutations of each format (builders in :mod:`bad_input_cases`)."""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bad_input_cases import (BRAIN_NRRD, CT_DICOM, HIPPO, SHARED, TESTS, Case, claimed, cut_file, cut_pixels,
                             dicom_file, dicom_series, fifo, itk_copy, mkdir, model, nested, nested_objects, nii,
                             nii_array, nrrd_from, path_only, plain, replace_with, same_as_source, setattrs, shape_is,
                             symlink, text_header, truncate)


# ----- random header mutations --------------------------------------------------------------
_NASTY = [0, -1, float("nan"), float("inf"), 1e38, 2**31 - 1, -(2**15), 3, 7]


def random_cases(seed: int, n_each: int) -> list[Case]:
    """One header field of each format set to a value from :data:`_NASTY` (seeded)."""
    rng = random.Random(seed)
    out: list[Case] = []
    nii_fields = ["dim[0]", "dim[1]", "dim[3]", "datatype", "bitpix", "vox_offset", "pixdim[0]", "pixdim[2]",
                  "scl_slope", "scl_inter", "qform_code", "sform_code", "quatern_b", "qoffset_x", "srow_x[0]",
                  "srow_z[2]"]
    for n in range(n_each):
        f = rng.choice(nii_fields)
        v = rng.choice(_NASTY)
        if f in ("datatype", "bitpix", "qform_code", "sform_code") or f.startswith("dim"):
            v = int(v) if np.isfinite(v) and abs(v) < 2**15 else 2**15 - 1
        out.append(Case(f"rand_nii_{n}_{f}={v}", "random mutation", nii(f"rand{n}", **{f: v}), "either"))
    nrrd_fields = {"sizes": ["35 51 0", "35 51 -3", "35 51 99999", "35 51", "a b c"],
                   "type": ["double", "uint64", "block", "float"], "space directions": [
                       "(0,0,0) (0,1,0) (0,0,1)", "(nan,0,0) (0,1,0) (0,0,1)", "(1,0,0) (1,0,0) (0,0,1)"],
                   "endian": ["big"], "encoding": ["gzip", "hex", "bzip2"], "dimension": ["2", "4", "0"]}
    mha_fields = {"DimSize": ["35 51 0", "35 51 3500", "0 0 0"], "ElementType": ["MET_DOUBLE", "MET_FLOAT", "MET_X"],
                  "ElementSpacing": ["0 0 0", "-1 1 1", "nan 1 1"],
                  "TransformMatrix": ["0 0 0 0 0 0 0 0 0", "1 0 0 1 0 0 0 0 1"], "NDims": ["2", "4"],
                  "BinaryDataByteOrderMSB": ["True"], "HeaderSize": ["100000", "-1"]}
    for n in range(n_each):
        k = rng.choice(sorted(nrrd_fields))
        v = rng.choice(nrrd_fields[k])
        out.append(Case(f"rand_nrrd_{n}_{k.replace(' ', '_')}", "random mutation",
                        text_header(f"rnrrd{n}", ".nrrd", False, {k: v}), "either", extra={"value": v}))
        k = rng.choice(sorted(mha_fields))
        v = rng.choice(mha_fields[k])
        out.append(Case(f"rand_mha_{n}_{k}", "random mutation", text_header(f"rmha{n}", ".mha", False, {k: v}),
                        "either", extra={"value": v}))
    dcm_fields = {"Rows": [0, 1, 65535], "Columns": [0, 4096], "BitsAllocated": [8, 32, 0],
                  "PixelRepresentation": [1], "SamplesPerPixel": [3], "NumberOfFrames": [0, 5, 100000],
                  "RescaleSlope": ["0", "1e38", "nan"], "SliceThickness": ["0", "-5"],
                  "ImagePositionPatient": [["nan", "0", "0"], ["0", "0"]]}
    for n in range(n_each):
        k = rng.choice(sorted(dcm_fields))
        v = rng.choice(dcm_fields[k])
        only = rng.choice([None, 3])
        out.append(Case(f"rand_dcm_{n}_{k}{'_one' if only is not None else ''}", "random mutation",
                        dicom_series(f"rdcm{n}", setattrs(**{k: v}), only=only), "either", extra={"value": v}))
    return out


# ----- the list ---------------------------------------------------------------------------------
def all_cases(seed: int = 18, n_random: int = 6) -> list[Case]:
    """Every case of the sweep, by class (see ``bench/bad_input_sweep.py``)."""
    hip = [35, 51, 35]
    q = {"sform_code": 0, "qform_code": 1}
    nrrd_raw = lambda d: itk_copy(d, "raw", ".nrrd", False)  # noqa: E731
    mha_raw = lambda d: itk_copy(d, "raw", ".mha", False)  # noqa: E731

    def mhd_pair(keep: float | None = None, missing: bool = False) -> Callable[[Path], Path]:
        def build(d: Path) -> Path:
            p = itk_copy(d, "pair", ".mhd", False)
            raw = d / "pair.raw"
            if missing:
                raw.unlink()
            elif keep is not None:
                raw.write_bytes(raw.read_bytes()[: int(raw.stat().st_size * keep)])
            return p
        return build

    def seg_beside(d: Path) -> None:
        shutil.copy(SHARED / "ct_dicom_3slice" / "liver_seg.dcm", d / "liver_seg.dcm")

    def rt_beside(d: Path) -> None:
        shutil.copy(TESTS / "dicom_objects" / "ct_rtstruct" / "rt.dcm", d / "zz_rt.dcm")

    cases = [
        # degenerate geometry
        Case("nii_pixdim_nan_qform", "degenerate geometry", nii("pixnan", **q, **{"pixdim[1]": float("nan")})),
        Case("nii_pixdim_inf_qform", "degenerate geometry", nii("pixinf", **q, **{"pixdim[2]": float("inf")})),
        Case("nii_pixdim_neg_qform", "degenerate geometry", nii("pixneg", **q, **{"pixdim[1]": -1.0})),
        Case("nii_pixdim_zero_qform", "degenerate geometry", nii("pixzero", **q, **{"pixdim[3]": 0.0})),
        Case("nii_pixdim_zero_noforms", "degenerate geometry",
             nii("pixzero_nf", qform_code=0, sform_code=0, **{"pixdim[1]": 0.0})),
        Case("nii_sform_qform_all_zero", "degenerate geometry",
             nii("allzero", qform_code=1, sform_code=1, quatern_b=0, quatern_c=0, quatern_d=0, srow_x=[0] * 4,
                 srow_y=[0] * 4, srow_z=[0] * 4, pixdim=[0] * 8)),
        Case("nii_sform_nan", "degenerate geometry", nii("sformnan", sform_code=2, srow_x=[float("nan")] * 4)),
        Case("nii_sform_zero_qform_ok", "degenerate geometry",
             nii("sformzero", qform_code=1, sform_code=2, srow_x=[0] * 4, srow_y=[0] * 4, srow_z=[0] * 4),
             "either"),
        Case("nii_sform_unexpected_scales", "degenerate geometry", nii("sformscale", **{"srow_z[2]": 3.0}), "either"),
        Case("dcm_iop_zero", "degenerate geometry", dicom_series("iopzero", setattrs(
            ImageOrientationPatient=[0] * 6))),
        Case("dcm_iop_row_eq_col", "degenerate geometry", dicom_series("ioprc", setattrs(
            ImageOrientationPatient=[1, 0, 0, 1, 0, 0]))),
        Case("dcm_iop_not_unit", "degenerate geometry", dicom_series("iop2", setattrs(
            ImageOrientationPatient=[2, 0, 0, 0, 2, 0]))),
        Case("dcm_pixelspacing_zero", "degenerate geometry", dicom_series("ps0", setattrs(PixelSpacing=[0, 0]))),
        Case("dcm_pixelspacing_neg", "degenerate geometry", dicom_series("psneg", setattrs(PixelSpacing=[-1, 1]))),
        Case("dcm1_iop_zero", "degenerate geometry", dicom_file("one_iopzero", setattrs(
            ImageOrientationPatient=[0] * 6))),
        Case("dcm1_pixelspacing_zero", "degenerate geometry", dicom_file("one_ps0", setattrs(PixelSpacing=[0, 0]))),
        Case("dcm1_thickness_zero", "degenerate geometry", dicom_file("one_th0", setattrs(
            SliceThickness="0", SpacingBetweenSlices="0")), "either"),
        # empty volumes
        Case("nii_dim3_zero", "empty volume", nii("dim3zero", **{"dim[3]": 0})),
        Case("nii_dim1_zero_gz", "empty volume", nii("dim1zero", gz=True, **{"dim[1]": 0})),
        Case("nii_dim0_zero", "empty volume", nii("dim0zero", **{"dim[0]": 0})),
        Case("nii_dim2_negative", "empty volume", nii("dimneg", **{"dim[2]": -5})),
        Case("nrrd_sizes_zero", "empty volume", text_header("sz0", ".nrrd", False, {"sizes": "35 51 0"})),
        Case("mha_dimsize_zero", "empty volume", text_header("dz0", ".mha", False, {"DimSize": "35 0 35"})),
        Case("dcm1_rows_zero", "empty volume", dicom_file("rows0", setattrs(Rows=0))),
        Case("empty_file_nii", "empty volume", plain("empty.nii", b"")),
        Case("empty_folder", "empty volume", mkdir("emptydir", with_file=True)),
        # broken pixel data
        Case("dcm_pixeldata_short_one", "broken pixel data", dicom_series("pdshort", cut_pixels(0.5), only=5)),
        Case("dcm1_pixeldata_short", "broken pixel data", dicom_file("one_pdshort", cut_pixels(0.9))),
        Case("mha_compressed_over_raw", "broken pixel data",
             text_header("cor", ".mha", False, {"CompressedData": "True"})),
        Case("mha_compressed_flag_false", "broken pixel data",
             text_header("cof", ".mha", True, {"CompressedData": "False", "CompressedDataSize": None})),
        Case("mha_compressed_garbage", "broken pixel data",
             text_header("cog", ".mha", True, {}, body=lambda b: bytes(len(b)))),
        Case("nrrd_gzip_over_raw", "broken pixel data", text_header("gor", ".nrrd", False, {"encoding": "gzip"}),
             "either", check=same_as_source()),  # zlib reads non-gzip data transparently: the true voxels
        Case("nrrd_raw_over_gzip", "broken pixel data", text_header("rog", ".nrrd", True, {"encoding": "raw"})),
        Case("nrrd_gzip_crc_damaged", "broken pixel data", text_header(
            "crc", ".nrrd", True, {}, body=lambda b: b[:len(b) // 2] + bytes([b[len(b) // 2] ^ 0xFF]) + b[len(b) // 2 + 1:])),
        Case("nii_vox_offset_past_end", "broken pixel data", nii("voxoff", vox_offset=1_000_000)),
        Case("nii_vox_offset_inf", "broken pixel data", nii("voxinf", vox_offset=float("inf"))),
        Case("dcm_member_rows_zero", "broken pixel data", dicom_series("rows0m", setattrs(Rows=0), only=9)),
        Case("nii_gz_crc_damaged", "broken pixel data", lambda d: (lambda raw: (d / "crc.nii.gz").write_bytes(
            raw[:-8] + bytes(4) + raw[-4:]) and d / "crc.nii.gz")(HIPPO.read_bytes())),
        # voxel types
        Case("nii_complex64", "voxel type", nii_array("c64", lambda a: a.astype(np.complex64))),
        Case("nii_complex128", "voxel type", nii_array("c128", lambda a: a.astype(np.complex128))),
        Case("nii_float128", "voxel type", nii("f128", datatype=1536, bitpix=128)),
        Case("nii_int64", "voxel type", nii_array("i64", lambda a: a.astype(np.int64)), "ok", check=shape_is(hip)),
        Case("nii_rgb24", "voxel type", nii_array("rgb", lambda a: np.stack([a] * 3, -1).astype(np.uint8).view(
            np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")]))[..., 0]), "either"),
        # overflow
        Case("nii_scl_slope_3e38_uint8", "overflow", nii("slope3e38", scl_slope=3e38, scl_inter=0)),
        Case("nii_scl_slope_1e30_uint8", "overflow", nii("slope1e30", scl_slope=1e30, scl_inter=0), "either"),
        Case("nii_scl_inter_inf", "overflow", nii("interinf", scl_slope=1, scl_inter=float("inf"))),
        Case("nii_float64_1e308", "overflow", nii_array("f64big", lambda a: a.astype(np.float64) * 1e305)),
        Case("nii_float64_1e100", "overflow", nii_array("f64e100", lambda a: a.astype(np.float64) * 1e98)),
        Case("nii_float32_near_max", "overflow", nii_array("f32max", lambda a: (a.astype(np.float32) * 1.3e36)),
             "either"),
        Case("nii_float32_tiny", "overflow", nii_array("f32tiny", lambda a: a.astype(np.float32) * 1e-43), "either"),
        Case("nrrd_double_1e308", "overflow", lambda d: nrrd_from(d, "dbl", HIPPO, lambda a: a * 1e306)),
        # memory
        Case("niigz_claims_14GB_small_file", "memory", claimed("claim14", (1900, 1000, 950), 64, 64)),
        Case("niigz_claims_14GB_14MB_zeros", "memory", claimed("zero14", (1900, 1000, 950), 64, 64, gz_members=850)),
        Case("nii_sparse_15GB", "memory", claimed("sparse15", (2000, 2000, 950), 16, 32, sparse=True)),
        Case("nii_sparse_3GB_int16", "memory", claimed("sparse3", (1200, 1300, 1000), 4, 16, sparse=True)),
        Case("nrrd_sizes_huge", "memory", text_header("szhuge", ".nrrd", False, {"sizes": "100000 100000 10000"})),
        Case("mha_dimsize_huge", "memory", text_header("dzhuge", ".mha", True, {"DimSize": "50000 50000 5000"})),
        Case("dcm1_rows_cols_huge", "memory", dicom_file("rchuge", setattrs(Rows=65535, Columns=65535))),
        # DICOM folders with non-image objects
        Case("dcm_ct_with_seg", "dicom non-image objects", dicom_series("ctseg", src=CT_DICOM, extra=seg_beside),
             "ok", check=shape_is([3, 512, 512], "CT")),
        Case("dcm_mr_with_rtstruct", "dicom non-image objects",
             dicom_series("mrrt", extra=rt_beside), "ok", check=shape_is([32, 51, 35])),
        # OS errors on the path
        Case("name_300_chars", "os error", lambda d: d / ("x" * 293 + ".nii.gz")),
        Case("path_5000_chars", "os error", lambda d: d / "/".join(["y" * 200] * 25) / "a.nii.gz"),
        Case("path_through_file", "os error", path_only("image.nii.gz/inner.nii.gz")),
        Case("fifo_named_nii", "os error", fifo("pipe.nii")),
        Case("devzero_named_niigz", "os error", symlink("zero.nii.gz", "/dev/zero")),
        Case("devzero_named_nrrd", "os error", symlink("zero.nrrd", "/dev/zero")),
        Case("broken_symlink", "os error", symlink("gone.nii.gz", "no-such-target.nii.gz")),
        Case("folder_named_niigz", "os error", mkdir("folder.nii.gz")),
        # truncations of each format
        *[Case(f"trunc_nii_{k}", "truncation", truncate(nii(f"tr{k}"), k)) for k in (100, 348, 0.5, 0.99)],
        *[Case(f"trunc_niigz_{k}", "truncation", truncate(nii(f"trg{k}", gz=True), k)) for k in (0.5, 0.99)],
        Case("trunc_niigz_trailer", "truncation", truncate(nii("trgt", gz=True), -8)),
        *[Case(f"trunc_nrrd_raw_{k}", "truncation", truncate(nrrd_raw, k)) for k in (0.1, 0.5, 0.99)],
        *[Case(f"trunc_nrrd_gzip_{k}", "truncation", truncate(lambda d: itk_copy(d, "gz", ".nrrd", True,
                                                                                   BRAIN_NRRD), k))
          for k in (0.5, 0.99)],
        *[Case(f"trunc_mha_raw_{k}", "truncation", truncate(mha_raw, k)) for k in (0.5, 0.99)],
        Case("trunc_mha_zlib_0.5", "truncation", truncate(lambda d: itk_copy(d, "z", ".mha", True), 0.5)),
        Case("trunc_mhd_raw_0.5", "truncation", mhd_pair(0.5)),
        Case("mhd_raw_missing", "truncation", mhd_pair(missing=True)),
        Case("trunc_dcm_series_slice_0.5", "truncation", cut_file(dicom_series("trs"), 7, 0.5)),
        Case("trunc_dcm_series_slice_0.99", "truncation", cut_file(dicom_series("trs99"), 0, 0.99)),
        Case("trunc_dcm1_0.6", "truncation", truncate(dicom_file("tr1", setattrs()), 0.6)),
        Case("trunc_dcm1_ct_0.5", "truncation", truncate(dicom_file("trct", setattrs(), src=CT_DICOM), 0.5)),
        # model folders
        Case("model_card_nested_200000", "model folder", model("deep", card_raw=nested(200_000)), kind="model"),
        Case("model_card_notes_50000_nested_objects", "model folder", model("nobj", card_raw=nested_objects(50_000)),
             kind="model"),
        Case("model_card_50000_extra_objects", "model folder", model("wide", card_edit=lambda c: c.update(
            extra=[{"a": {"b": n}} for n in range(50_000)])), "either", kind="model"),
        Case("model_card_notes_nested_obj", "model folder", model("notes", card_edit=lambda c: c.update(
            notes={"x": [{"y": 1}] * 50_000})), kind="model"),
        Case("model_1e6_labels", "model folder", model("labels", card_edit=lambda c: c.update(
            labels={str(n): f"l{n}" for n in range(1_000_000)})), kind="model"),
        Case("model_base_width_1e6", "model folder", model("bw", card_edit=lambda c: c["spec"].update(
            base_width=1_000_000)), kind="model"),
        Case("model_spacing_0.001", "model folder", model("sp", card_edit=lambda c: c["preprocessing"].update(
            target_spacing=[0.001, 0.001, 0.001])), kind="model"),
        Case("model_patch_huge", "model folder", model("patch", card_edit=lambda c: c["training"].update(
            patch_size=[100000, 100000, 100000])), kind="model"),
        Case("model_num_classes_5", "model folder", model("nc5", card_edit=lambda c: c["spec"].update(
            num_classes=5)), kind="model"),
        Case("model_weights_devzero", "model folder", model("wzero", weights=replace_with("zero")), kind="model"),
        Case("model_weights_fifo", "model folder", model("wfifo", weights=replace_with("fifo")), kind="model"),
        Case("model_weights_half", "model folder", model("whalf", weights=replace_with("half")), kind="model"),
        Case("model_weights_empty", "model folder", model("wempty", weights=replace_with("empty")), kind="model"),
        Case("model_weights_header_2e62", "model folder", model("whdr", weights=replace_with("hugeheader")),
             kind="model"),
        Case("model_card_fifo", "model folder", model("cfifo", card_raw=replace_with("fifo")), kind="model"),
        Case("model_card_devzero", "model folder", model("czero", card_raw=replace_with("zero")), kind="model"),
        Case("model_card_truncated", "model folder", model("ctrunc", card_raw=lambda p: p.write_text(
            p.read_text()[:200])), kind="model"),
        # where the result goes
        Case("output_parent_is_file", "output", lambda d: (d / "afile").write_text("x") and d / "afile" / "o.nii.gz",
             kind="output"),
        Case("output_name_300_chars", "output", lambda d: d / ("o" * 293 + ".nii.gz"), kind="output"),
        Case("output_unknown_suffix", "output", lambda d: d / "out.xyz", kind="output"),
    ]
    return cases + random_cases(seed, n_random)
